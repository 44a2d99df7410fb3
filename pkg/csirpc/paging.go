package csirpc

import (
	"errors"
	"fmt"
	"sort"
	"strings"
)

// Paging errors; every daemon's Codes maps them.
var (
	// ErrBadToken is a starting token this listing did not make: the spec
	// asks for Aborted.
	ErrBadToken = errors.New("invalid starting_token")
	// ErrBadMaxEntries is a negative max_entries.
	ErrBadMaxEntries = errors.New("invalid max_entries")
)

// tokenPrefix marks our page tokens; anything else is rejected as the spec
// asks (Aborted), so a token from another driver or a typo never silently
// restarts a listing.
const tokenPrefix = "after:"

// Page returns the keys after token (at most max, 0 meaning all) from the
// sorted keys, and the token of the next page ("" when done). Tokens name
// the last key returned, so a listing survives entries added or deleted
// between pages.
func Page(sortedKeys []string, token string, max int32) (first, end int, next string, err error) {
	start := 0
	if token != "" {
		after, ok := strings.CutPrefix(token, tokenPrefix)
		if !ok || after == "" {
			return 0, 0, "", fmt.Errorf("%w %q", ErrBadToken, token)
		}
		start = sort.SearchStrings(sortedKeys, after)
		if start < len(sortedKeys) && sortedKeys[start] == after {
			start++
		}
	}
	if max < 0 {
		return 0, 0, "", fmt.Errorf("%w: %d is negative", ErrBadMaxEntries, max)
	}
	end = len(sortedKeys)
	if max > 0 && start+int(max) < end {
		end = start + int(max)
		next = tokenPrefix + sortedKeys[end-1]
	}
	return start, end, next, nil
}
