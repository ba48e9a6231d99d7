package inventory

import (
	"cmp"
	"fmt"
	"maps"
	"slices"
	"strings"
)

// Retained sums the retained messages at and under a topic prefix, by the next topic level.
type Retained struct {
	Prefix   string          `json:"prefix"`
	Count    int             `json:"count"` // at or under the prefix
	Bytes    int64           `json:"bytes"` // their payload bytes
	Children []RetainedChild `json:"children"`
}

// RetainedChild is one topic one level below the prefix, with everything under it.
type RetainedChild struct {
	Topic string `json:"topic"`
	Count int    `json:"count"`
	Bytes int64  `json:"bytes"`
	Leaf  bool   `json:"leaf"` // a retained message is on exactly this topic
}

// CheckPrefix refuses a prefix that is not a topic: Under sums by whole levels below it.
func CheckPrefix(prefix string) error {
	if strings.HasSuffix(prefix, "/") || strings.ContainsAny(prefix, "+#") {
		return fmt.Errorf("%q is not a topic (no wildcards, no trailing /)", prefix)
	}
	return nil
}

// RetainedSum collects retained messages (Add) and sums them under a prefix (Under).
type RetainedSum struct {
	topics []string
	sizes  []int
}

// Add counts a retained message.
func (r *RetainedSum) Add(topic string, payloadBytes int) {
	r.topics = append(r.topics, topic)
	r.sizes = append(r.sizes, payloadBytes)
}

// Under sums what was added at and under prefix ("": everything), by the next level.
func (r *RetainedSum) Under(prefix string) Retained {
	out := Retained{Prefix: prefix, Children: []RetainedChild{}}
	children := make(map[string]*RetainedChild)
	for i, topic := range r.topics {
		rest := topic
		if prefix != "" {
			var ok bool
			if rest, ok = strings.CutPrefix(topic, prefix+"/"); !ok && topic != prefix {
				continue
			}
		}
		out.Count++
		out.Bytes += int64(r.sizes[i])
		if topic == prefix {
			continue
		}
		level, _, deeper := strings.Cut(rest, "/")
		if prefix != "" {
			level = prefix + "/" + level
		}
		ch := children[level]
		if ch == nil {
			ch = &RetainedChild{Topic: level}
			children[level] = ch
		}
		ch.Count++
		ch.Bytes += int64(r.sizes[i])
		ch.Leaf = ch.Leaf || !deeper
	}
	for _, ch := range slices.SortedFunc(maps.Values(children), func(a, b *RetainedChild) int { return cmp.Compare(a.Topic, b.Topic) }) {
		out.Children = append(out.Children, *ch)
	}
	return out
}
