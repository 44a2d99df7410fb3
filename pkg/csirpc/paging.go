package csirpc

import (
	"sort"
	"strings"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
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
			return 0, 0, "", status.Errorf(codes.Aborted, "invalid starting_token %q", token)
		}
		start = sort.SearchStrings(sortedKeys, after)
		if start < len(sortedKeys) && sortedKeys[start] == after {
			start++
		}
	}
	if max < 0 {
		return 0, 0, "", status.Errorf(codes.InvalidArgument, "max_entries %d is negative", max)
	}
	end = len(sortedKeys)
	if max > 0 && start+int(max) < end {
		end = start + int(max)
		next = tokenPrefix + sortedKeys[end-1]
	}
	return start, end, next, nil
}
