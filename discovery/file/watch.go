package file

import (
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"time"

	"github.com/fsnotify/fsnotify"

	"github.com/wafplane/wafplane/discovery"
)

// Hold-off of the watch: a burst of events (an editor's write-rename-chmod, a ConfigMap
// symlink swap) becomes one read once the file has been quiet for HoldOff, or at the
// latest MaxHoldOff after the first event.
const (
	HoldOff    = 100 * time.Millisecond
	MaxHoldOff = time.Second
	// A file is read once it has not changed for settleFor; one that keeps changing is
	// read at the latest maxSettle after its first change.
	settleFor = 250 * time.Millisecond
	maxSettle = 5 * time.Second
)

// Source serves the gateways of one file, or the embedded default when Path is empty.
type Source struct {
	Path string
	Log  *slog.Logger
}

var _ discovery.Source = (*Source)(nil)

// Run sends the state at start, then again after each change of the file. A file that
// cannot be read or parsed sends the last good state with the error; at start that is an
// empty state, so an Envoy never gets gateways nobody configured.
func (s *Source) Run(ctx context.Context, updates chan<- discovery.Update) error {
	if s.Path == "" {
		send(ctx, updates, discovery.Update{State: Default()})
		<-ctx.Done()
		return nil
	}
	var last discovery.State
	good := false
	read := func() {
		st, err := Load(s.Path)
		if err != nil {
			if good {
				s.Log.Error("gateways file rejected, last good gateways stay", "file", s.Path, "error", err)
			} else {
				s.Log.Error("gateways file rejected; no gateways are served until it is fixed", "file", s.Path, "error", err)
			}
			send(ctx, updates, discovery.Update{State: last, Err: err})
			return
		}
		last, good = st, true
		s.Log.Info("gateways file read", "file", s.Path, "gateways", len(st.Gateways))
		send(ctx, updates, discovery.Update{State: st})
	}

	w, err := fsnotify.NewWatcher()
	if err != nil {
		return err
	}
	defer w.Close()
	// The directory, not the file: editors replace files and ConfigMaps swap symlinks.
	if err := w.Add(filepath.Dir(s.Path)); err != nil {
		return err
	}
	read()
	var quiet, deadline <-chan time.Time
	var first time.Time // first event of the burst being waited out
	// settled reads the file once it has stopped changing (a slow writer, `cat > file` from
	// a pipe, leaves it half written for a while), else waits HoldOff more.
	settled := func() {
		if st, err := os.Stat(s.Path); err == nil && time.Since(st.ModTime()) < settleFor && time.Since(first) < maxSettle {
			quiet = time.After(HoldOff)
			return
		}
		quiet, deadline = nil, nil
		read()
	}
	for {
		select {
		case <-ctx.Done():
			return nil
		case ev, ok := <-w.Events:
			if !ok {
				return nil
			}
			if !relevant(ev, s.Path) {
				continue
			}
			quiet = time.After(HoldOff)
			if deadline == nil {
				deadline, first = time.After(MaxHoldOff), time.Now()
			}
		case err, ok := <-w.Errors:
			if !ok {
				return nil
			}
			s.Log.Warn("gateways file watch", "error", err)
		case <-quiet:
			settled()
		case <-deadline:
			deadline = nil
			settled()
		}
	}
}

func send(ctx context.Context, updates chan<- discovery.Update, u discovery.Update) {
	select {
	case updates <- u:
	case <-ctx.Done():
	}
}

// relevant is true for events on the file itself or on the ..data symlink of a ConfigMap volume.
func relevant(ev fsnotify.Event, file string) bool {
	if ev.Has(fsnotify.Chmod) && !ev.Has(fsnotify.Write) {
		return false
	}
	name := filepath.Clean(ev.Name)
	return name == filepath.Clean(file) || filepath.Base(name) == "..data"
}
