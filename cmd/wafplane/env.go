package main

import (
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/pflag"
)

// envFlags defines flags whose defaults come from environment variables, so that every
// flag has an environment equivalent: WAFPLANE_<FLAG> first, then any alias (Datadog's
// names). A command-line flag beats both. Bad values are kept as errors naming the variable.
type envFlags struct {
	fs   *pflag.FlagSet
	errs []error
}

func envName(flag string) string {
	return "WAFPLANE_" + strings.ToUpper(strings.ReplaceAll(flag, "-", "_"))
}

// lookup returns the first set variable of WAFPLANE_<name> and aliases.
func lookup(name string, aliases []string) (key, value string, ok bool) {
	for _, k := range append([]string{envName(name)}, aliases...) {
		if v, ok := os.LookupEnv(k); ok {
			return k, v, true
		}
	}
	return "", "", false
}

func usageWithEnv(usage, name string, aliases []string) string {
	return fmt.Sprintf("%s (env %s)", usage, strings.Join(append([]string{envName(name)}, aliases...), ", "))
}

// given says whether a flag was set on the command line or through its variable, so that
// a default that depends on other flags applies only when it was not.
func (e *envFlags) given(name string) bool {
	_, _, ok := lookup(name, nil)
	return e.fs.Changed(name) || ok
}

func (e *envFlags) String(p *string, name, def, usage string, aliases ...string) {
	if _, v, ok := lookup(name, aliases); ok {
		def = v
	}
	e.fs.StringVar(p, name, def, usageWithEnv(usage, name, aliases))
}

func (e *envFlags) Bool(p *bool, name string, def bool, usage string, aliases ...string) {
	if k, v, ok := lookup(name, aliases); ok {
		b, err := strconv.ParseBool(v)
		if err != nil {
			e.errs = append(e.errs, fmt.Errorf("%s=%q: want true or false", k, v))
		} else {
			def = b
		}
	}
	e.fs.BoolVar(p, name, def, usageWithEnv(usage, name, aliases))
}

func (e *envFlags) Int(p *int, name string, def int, usage string, aliases ...string) {
	if k, v, ok := lookup(name, aliases); ok {
		n, err := strconv.Atoi(v)
		if err != nil {
			e.errs = append(e.errs, fmt.Errorf("%s=%q: want an integer", k, v))
		} else {
			def = n
		}
	}
	e.fs.IntVar(p, name, def, usageWithEnv(usage, name, aliases))
}

// Duration accepts Go durations (10ms) and, as Datadog's variables do, bare integers in microseconds.
func (e *envFlags) Duration(p *time.Duration, name string, def time.Duration, usage string, aliases ...string) {
	if k, v, ok := lookup(name, aliases); ok {
		d, err := parseDuration(v)
		if err != nil {
			e.errs = append(e.errs, fmt.Errorf("%s=%q: %w", k, v, err))
		} else {
			def = d
		}
	}
	e.fs.DurationVar(p, name, def, usageWithEnv(usage, name, aliases))
}

func (e *envFlags) StringSlice(p *[]string, name string, def []string, usage string, aliases ...string) {
	if _, v, ok := lookup(name, aliases); ok {
		def = nil
		for part := range strings.SplitSeq(v, ",") {
			if part = strings.TrimSpace(part); part != "" {
				def = append(def, part)
			}
		}
	}
	e.fs.StringSliceVar(p, name, def, usageWithEnv(usage, name, aliases))
}

func parseDuration(v string) (time.Duration, error) {
	if n, err := strconv.ParseInt(v, 10, 64); err == nil {
		return time.Duration(n) * time.Microsecond, nil
	}
	d, err := time.ParseDuration(v)
	if err != nil {
		return 0, fmt.Errorf("want a duration such as 10ms, or microseconds")
	}
	return d, nil
}
