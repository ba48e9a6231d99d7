package router

import "strings"

// SharePrefix starts the filter of a shared subscription: $share/{ShareName}/{filter} (§4.8.2).
const SharePrefix = "$share/"

// ParseShared splits a shared subscription's filter into its share name and the filter it
// subscribes to. shared is false for an ordinary filter; ok is false for a shared one that is
// malformed: an empty share name or filter, or a name with '+' or '#' [MQTT-4.8.2-1],
// [MQTT-4.8.2-2].
func ParseShared(f string) (name, filter string, shared, ok bool) {
	rest, shared := strings.CutPrefix(f, SharePrefix)
	if !shared {
		return "", f, false, true
	}
	name, filter, found := strings.Cut(rest, "/")
	ok = found && name != "" && filter != "" && !strings.ContainsAny(name, "+#")
	return name, filter, true, ok
}
