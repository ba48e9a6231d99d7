// Package router decides which clients receive a PUBLISH: it keeps every
// (client, topic filter) subscription in a trie of filter levels and matches a
// topic name against all of them in one walk.
//
// The matching rules of MQTT 3.1.1 section 4.7 live in this package only, in
// level.go: how a string splits into levels, what '+' and '#' mean, and which
// topics a leading wildcard may not see. MatchFilter is the reference
// implementation of those rules for one filter and one topic; the Trie here
// and the retained-message tree in package retain are tested against it.
//
// Inputs are trusted: callers validate topic names and filters (package codec)
// before they get here. Invalid strings never make this package panic, but
// what they match is unspecified.
//
// Locking: a Trie has one RWMutex. No method calls out of the package while
// holding it, so it can be taken under any other lock.
package router
