package placements

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"regexp"
	"sort"

	coordinationv1 "k8s.io/api/coordination/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/dots-csi/dots/pkg/api"
	"github.com/dots-csi/dots/pkg/kubeclient"
)

// Kubernetes keeps each record as a Lease in the controller's namespace:
// named after the kind and ID (hashed when the ID is not a valid object
// name), the server in spec.holderIdentity, the ID in an annotation. A
// Lease is the API's smallest object, and "this name is held by that
// server" is what it says. Creating one is atomic, so two controllers
// never place one name twice. A forgotten server is a Lease too.
type Kubernetes struct {
	leases    leaseClient
	namespace string
}

// leaseClient is the part of client-go's Lease client the store uses.
type leaseClient interface {
	Create(ctx context.Context, l *coordinationv1.Lease, opts metav1.CreateOptions) (*coordinationv1.Lease, error)
	Get(ctx context.Context, name string, opts metav1.GetOptions) (*coordinationv1.Lease, error)
	Update(ctx context.Context, l *coordinationv1.Lease, opts metav1.UpdateOptions) (*coordinationv1.Lease, error)
	Delete(ctx context.Context, name string, opts metav1.DeleteOptions) error
	List(ctx context.Context, opts metav1.ListOptions) (*coordinationv1.LeaseList, error)
}

// Labels and annotations of the store's Leases.
const (
	labelKind       = "dots.csi.dev/placement"
	labelForgotten  = "dots.csi.dev/forgotten-server"
	annotationID    = "dots.csi.dev/id"
	maxReadableName = 200
)

var objectNameRE = regexp.MustCompile(`^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$`)

// NewKubernetes connects with $KUBECONFIG when set, else as the pod it
// runs in. namespace "" means $POD_NAMESPACE, else the pod's namespace.
func NewKubernetes(namespace string) (*Kubernetes, error) {
	cfg, err := kubeclient.Config()
	if err != nil {
		return nil, fmt.Errorf("placements store kubernetes: %w", err)
	}
	if namespace, err = kubeclient.Namespace(namespace); err != nil {
		return nil, fmt.Errorf("placements store kubernetes: %w", err)
	}
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return nil, err
	}
	return NewKubernetesWith(cs.CoordinationV1().Leases(namespace), namespace), nil
}

// NewKubernetesWith uses a given Lease client (a fake one in tests).
func NewKubernetesWith(leases leaseClient, namespace string) *Kubernetes {
	return &Kubernetes{leases: leases, namespace: namespace}
}

// objectName is kind.ID, or kind.h<hash> when the ID is not a valid
// object name (upper case, '_', ':').
func objectName(kind Kind, id string) string {
	if objectNameRE.MatchString(id) && len(id) <= maxReadableName {
		return string(kind) + "." + id
	}
	sum := sha256.Sum256([]byte(id))
	return string(kind) + ".h" + hex.EncodeToString(sum[:16])
}

// Get implements Store.
func (k *Kubernetes) Get(ctx context.Context, kind Kind, id string) (string, bool, error) {
	r, ok, err := k.Lookup(ctx, kind, id)
	return r.Server, ok, err
}

// Lookup implements Store.
func (k *Kubernetes) Lookup(ctx context.Context, kind Kind, id string) (Record, bool, error) {
	r, l, err := k.lease(ctx, kind, id)
	return r, l != nil, err
}

// lease reads the Lease of a record (nil: none).
func (k *Kubernetes) lease(ctx context.Context, kind Kind, id string) (Record, *coordinationv1.Lease, error) {
	r := Record{Kind: kind, ID: id}
	if _, err := ParseKind(string(kind)); err != nil {
		return r, nil, err
	}
	l, err := k.leases.Get(ctx, objectName(kind, id), metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return r, nil, nil
	}
	if err != nil {
		return r, nil, err
	}
	if l.Annotations[annotationID] != id {
		return r, nil, fmt.Errorf("placement %s names %q, not %q: two IDs hash alike", l.Name, l.Annotations[annotationID], id)
	}
	r.Server = holder(l)
	fromAnnotations(&r, l.Annotations)
	return r, l, nil
}

// Update implements Store: the Lease is updated at the resource version it
// was read at, so a concurrent change fails it (ErrChanged).
func (k *Kubernetes) Update(ctx context.Context, old, r Record) error {
	if err := checkUpdate(old, r); err != nil {
		return err
	}
	cur, l, err := k.lease(ctx, r.Kind, r.ID)
	if err != nil {
		return err
	}
	if l == nil || !cur.Equal(old) {
		return fmt.Errorf("%s %q: %w", r.Kind, r.ID, ErrChanged)
	}
	l = l.DeepCopy()
	server := r.Server
	l.Spec.HolderIdentity = &server
	setAnnotations(l.Annotations, r)
	_, err = k.leases.Update(ctx, l, metav1.UpdateOptions{})
	if apierrors.IsConflict(err) || apierrors.IsNotFound(err) {
		return fmt.Errorf("%s %q: %w: %v", r.Kind, r.ID, ErrChanged, err)
	}
	return err
}

func holder(l *coordinationv1.Lease) string {
	if l.Spec.HolderIdentity == nil {
		return ""
	}
	return *l.Spec.HolderIdentity
}

// Put implements Store.
func (k *Kubernetes) Put(ctx context.Context, r Record) error {
	if _, err := ParseKind(string(r.Kind)); err != nil {
		return err
	}
	if err := api.ValidateServerName(r.Server); err != nil {
		return err
	}
	server := r.Server
	annotations := map[string]string{annotationID: r.ID}
	setAnnotations(annotations, r)
	_, err := k.leases.Create(ctx, &coordinationv1.Lease{
		ObjectMeta: metav1.ObjectMeta{Name: objectName(r.Kind, r.ID),
			Labels:      map[string]string{labelKind: string(r.Kind)},
			Annotations: annotations},
		Spec: coordinationv1.LeaseSpec{HolderIdentity: &server},
	}, metav1.CreateOptions{})
	if !apierrors.IsAlreadyExists(err) {
		return err
	}
	s, ok, gerr := k.Get(ctx, r.Kind, r.ID)
	switch {
	case gerr != nil:
		return gerr
	case ok && s == r.Server:
		return nil
	case ok:
		return fmt.Errorf("%s %q: %w %q", r.Kind, r.ID, ErrConflict, s)
	}
	return k.Put(ctx, r) // deleted meanwhile
}

// Delete implements Store: only the record of that server, and only if it
// did not change since it was read (a precondition on its UID and version).
func (k *Kubernetes) Delete(ctx context.Context, r Record) error {
	name := objectName(r.Kind, r.ID)
	l, err := k.leases.Get(ctx, name, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return nil
	}
	if err != nil || holder(l) != r.Server || l.Annotations[annotationID] != r.ID {
		return err
	}
	err = k.leases.Delete(ctx, name, metav1.DeleteOptions{Preconditions: &metav1.Preconditions{UID: &l.UID, ResourceVersion: &l.ResourceVersion}})
	if apierrors.IsNotFound(err) {
		return nil
	}
	return err
}

// List implements Store, in pages.
func (k *Kubernetes) List(ctx context.Context) ([]Record, error) {
	var out []Record
	opts := metav1.ListOptions{LabelSelector: labelKind, Limit: 500}
	for {
		page, err := k.leases.List(ctx, opts)
		if err != nil {
			return nil, err
		}
		for _, l := range page.Items {
			kind, err := ParseKind(l.Labels[labelKind])
			if err != nil {
				continue
			}
			r := Record{Kind: kind, ID: l.Annotations[annotationID], Server: holder(&l)}
			fromAnnotations(&r, l.Annotations)
			out = append(out, r)
		}
		if opts.Continue = page.Continue; opts.Continue == "" {
			break
		}
	}
	sort.Slice(out, func(i, j int) bool {
		return out[i].Kind < out[j].Kind || out[i].Kind == out[j].Kind && out[i].ID < out[j].ID
	})
	return out, nil
}

func forgottenName(server string) string { return "forgotten-server." + server }

// Forget implements Store.
func (k *Kubernetes) Forget(ctx context.Context, server string) error {
	if err := api.ValidateServerName(server); err != nil {
		return err
	}
	_, err := k.leases.Create(ctx, &coordinationv1.Lease{
		ObjectMeta: metav1.ObjectMeta{Name: forgottenName(server), Labels: map[string]string{labelForgotten: server}},
		Spec:       coordinationv1.LeaseSpec{HolderIdentity: &server},
	}, metav1.CreateOptions{})
	if apierrors.IsAlreadyExists(err) {
		return nil
	}
	return err
}

// Forgotten implements Store.
func (k *Kubernetes) Forgotten(ctx context.Context, server string) (bool, error) {
	if err := api.ValidateServerName(server); err != nil {
		return false, err
	}
	_, err := k.leases.Get(ctx, forgottenName(server), metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return false, nil
	}
	return err == nil, err
}
