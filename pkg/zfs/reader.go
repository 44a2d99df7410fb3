package zfs

import (
	"context"
	"strconv"
	"strings"

	"github.com/dots-csi/dots/pkg/zfs/command"
)

// propTable is the parsed output of one `zfs get`: datasets in the order
// zfs printed them (parents before children, a dataset before its
// snapshots) and their properties.
type propTable struct {
	order []string
	props map[string]dsProps
}

// Depths for getProps.
const (
	depthSelf      = 0  // only the named datasets
	depthRecursive = -1 // everything below them
)

// getProps reads props of names (and, with depth > 0, of their descendants
// down to depth, or all of them with depthRecursive) in one `zfs get`. Only
// flags that OpenZFS and zfs-fuse both accept are used.
func (p *Pool) getProps(ctx context.Context, depth int, props []string, names ...string) (*propTable, error) {
	args := []string{"get", "-Hp", "-o", "name,property,value,source"}
	switch {
	case depth == depthRecursive:
		args = append(args, "-r")
	case depth > 0:
		args = append(args, "-d", strconv.Itoa(depth))
	}
	args = append(args, strings.Join(props, ","))
	args = append(args, names...)
	out, err := p.run(ctx, command.Z(args...))
	if err != nil {
		return nil, wrapErr("get "+strings.Join(names, " "), err)
	}
	return parsePropTable(string(out)), nil
}

func parsePropTable(out string) *propTable {
	t := &propTable{props: map[string]dsProps{}}
	for _, line := range strings.Split(out, "\n") {
		if line == "" {
			continue
		}
		f := strings.SplitN(line, "\t", 4)
		if len(f) < 3 {
			continue
		}
		pv := propValue{value: f[2]}
		if len(f) == 4 {
			pv.source = f[3]
		}
		d, ok := t.props[f[0]]
		if !ok {
			d = dsProps{}
			t.props[f[0]] = d
			t.order = append(t.order, f[0])
		}
		d[f[1]] = pv
	}
	return t
}
