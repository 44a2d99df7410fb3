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
	after, err := ParseToken(token)
	if err != nil {
		return 0, 0, "", err
	}
	if err := CheckMaxEntries(max); err != nil {
		return 0, 0, "", err
	}
	start := 0
	if after != "" {
		start = sort.SearchStrings(sortedKeys, after)
		if start < len(sortedKeys) && sortedKeys[start] == after {
			start++
		}
	}
	end = len(sortedKeys)
	if max > 0 && start+int(max) < end {
		end = start + int(max)
		next = TokenAfter(sortedKeys[end-1])
	}
	return start, end, next, nil
}

// ParseToken returns the key a starting token names ("" for no token):
// a listing that keeps its keys sorted resumes right after it, without
// reading the entries before (see Page).
func ParseToken(token string) (after string, err error) {
	if token == "" {
		return "", nil
	}
	after, ok := strings.CutPrefix(token, tokenPrefix)
	if !ok || after == "" {
		return "", fmt.Errorf("%w %q", ErrBadToken, token)
	}
	return after, nil
}

// TokenAfter is the token of the page that follows key.
func TokenAfter(key string) string { return tokenPrefix + key }

// CheckMaxEntries refuses a negative max_entries.
func CheckMaxEntries(max int32) error {
	if max < 0 {
		return fmt.Errorf("%w: %d is negative", ErrBadMaxEntries, max)
	}
	return nil
}
