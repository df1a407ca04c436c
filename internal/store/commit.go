package store

// NewCommit returns an unfinished Commit and the function that finishes
// it, for Store wrappers (fault injection in tests, instrumentation).
func NewCommit() (*Commit, func(rev int64, err error)) {
	c := newCommit()
	return c, c.finish
}
