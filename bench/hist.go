package bench

import (
	"math"
	"math/bits"
)

// subBits sets the histogram's precision: each power of two is split into
// 2^(subBits-1) linear buckets, so a bucket is at most 1/128 of its values
// wide and a percentile read from its middle is off by under 0.4%.
const subBits = 8

const (
	subCount   = 1 << subBits
	halfCount  = subCount / 2
	maxShift   = 64 - subBits
	numBuckets = maxShift*halfCount + subCount
)

// histogram counts durations in nanoseconds in log-linear buckets (the
// HdrHistogram layout): values below subCount are exact, larger ones keep
// their top subBits bits. It costs one fixed array, so recording never
// allocates whatever the number of samples.
type histogram struct {
	counts [numBuckets]uint64
	n      uint64
	max    int64
}

// bucketOf maps v >= 0 to its bucket.
func bucketOf(v uint64) int {
	l := bits.Len64(v)
	if l <= subBits {
		return int(v)
	}
	shift := l - subBits
	return shift*halfCount + int(v>>shift)
}

// bucketRange returns the smallest and largest value of bucket i.
func bucketRange(i int) (lo, hi uint64) {
	if i < subCount {
		return uint64(i), uint64(i)
	}
	shift := (i - halfCount) / halfCount
	m := uint64(i - shift*halfCount)
	return m << shift, (m+1)<<shift - 1
}

// record adds one sample; negative values count as 0.
func (h *histogram) record(ns int64) {
	if ns < 0 {
		ns = 0
	}
	h.counts[bucketOf(uint64(ns))]++
	h.n++
	if ns > h.max {
		h.max = ns
	}
}

// merge adds o's samples to h.
func (h *histogram) merge(o *histogram) {
	for i, c := range o.counts {
		h.counts[i] += c
	}
	h.n += o.n
	h.max = max(h.max, o.max)
}

// quantile returns the value at or below which a fraction q (0..1) of the
// samples lie, taken from the middle of its bucket and never above the
// largest sample. It is 0 for an empty histogram.
func (h *histogram) quantile(q float64) int64 {
	if h.n == 0 {
		return 0
	}
	if q >= 1 {
		return h.max
	}
	rank := uint64(math.Ceil(q * float64(h.n)))
	rank = max(rank, 1)
	var seen uint64
	for i, c := range h.counts {
		seen += c
		if seen >= rank {
			lo, hi := bucketRange(i)
			return min(int64(lo+(hi-lo)/2), h.max)
		}
	}
	return h.max
}
