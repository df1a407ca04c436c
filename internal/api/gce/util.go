package gce

import "strconv"

func itoa64(v uint64) string { return strconv.FormatUint(v, 10) }
