// Package retain keeps the last retained PUBLISH of every topic in memory
// and finds the ones a new subscription must receive.
//
// Messages sit in a tree of topic levels, so matching a filter walks only
// the branches the filter can reach: a literal level follows one child, '+'
// every child, and '#' takes a whole subtree. The rules themselves (how
// levels split, what the wildcards mean, the '$' exemption) come from
// package router, which defines them once for the whole broker.
//
// Persistence is not done here: the caller writes what Set reports as
// changed to the store, and reloads the Store at start-up.
//
// Locking: a Store has one RWMutex, and no method calls out of the package
// while holding it.
package retain
