package server

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
	typedcorev1 "k8s.io/client-go/kubernetes/typed/core/v1"
	"k8s.io/klog/v2"

	"github.com/dots-csi/dots/pkg/kubeclient"
	"github.com/dots-csi/dots/pkg/zfs"
	"github.com/dots-csi/dots/pkg/zfs/command"
)

// checkZFSModule refuses to start a server whose node cannot run it: the
// OpenZFS kernel module missing, or of another release series than the
// image's userland (zfs.CheckModule, reading the module under root: "/"
// in production). zfs-fuse has no kernel module: with --zfs-cli=zfs-fuse
// nothing is checked, and with auto only a module that is there (without
// one, the flavour detection that follows finds zfs-fuse or fails).
func checkZFSModule(ctx context.Context, cfg Config, r command.Runner, root string) error {
	if cfg.SkipZFSModuleCheck {
		klog.InfoS("The ZFS kernel module is not checked (--zfs-module-check=false)")
		return nil
	}
	switch zfs.CLI(cfg.ZFSCLI) {
	case zfs.CLIZFSFuse:
		return nil
	case zfs.CLIAuto:
		if _, err := os.Stat(filepath.Join(root, "sys", "module", "zfs")); err != nil {
			klog.V(2).InfoS("No OpenZFS kernel module here: the ZFS flavour is detected next (zfs-fuse has none)")
			return nil
		}
	}
	userland, uerr := zfs.UserlandVersion(ctx, r)
	mc, err := zfs.CheckModule(root, userland)
	switch {
	case errors.Is(err, zfs.ErrModuleMissing):
		return err
	case uerr != nil:
		return fmt.Errorf("%w: the userland's version is unknown: %v", zfs.ErrModuleMismatch, uerr)
	case err != nil:
		return err
	}
	if mc.PatchDiffers {
		klog.InfoS("The OpenZFS kernel module and the userland are other patch releases of one series", "module", mc.Kernel, "userland", mc.Userland)
	} else {
		klog.InfoS("OpenZFS kernel module", "module", mc.Kernel, "userland", mc.Userland)
	}
	return nil
}

// startFailureReason names a refused start in its Event.
func startFailureReason(err error) string {
	switch {
	case errors.Is(err, zfs.ErrModuleMissing):
		return "ZFSModuleMissing"
	case errors.Is(err, zfs.ErrModuleMismatch):
		return "ZFSModuleMismatch"
	}
	return "StartFailed"
}

// podRef is the pod a server runs in, from the downward API ($POD_NAME,
// $POD_NAMESPACE, $POD_UID: the chart sets them).
type podRef struct{ name, namespace, uid string }

func podFromEnv(getenv func(string) string) (podRef, bool) {
	ref := podRef{name: getenv("POD_NAME"), namespace: getenv("POD_NAMESPACE"), uid: getenv("POD_UID")}
	return ref, ref.name != "" && ref.namespace != ""
}

// reportStartFailure records why the server refuses to start as a Warning
// Event on its pod, where `kubectl describe pod` and `kubectl get events`
// show it. Best effort: outside a pod, without a token or without RBAC for
// events (the chart's server.events) the log line and the exit say it.
func reportStartFailure(cause error, getenv func(string) string) {
	ref, ok := podFromEnv(getenv)
	if !ok {
		return
	}
	cfg, err := kubeclient.Config()
	if err != nil {
		klog.InfoS("No Event on the pod: no access to the Kubernetes API", "reason", err.Error())
		return
	}
	cfg.Timeout = 10 * time.Second
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		klog.InfoS("No Event on the pod", "reason", err.Error())
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := recordStartFailure(ctx, cs.CoreV1(), ref, startFailureReason(cause), cause.Error(), time.Now()); err != nil {
		klog.InfoS("No Event on the pod", "reason", err.Error())
	}
}

// maxEventMessage keeps a message within what the API server accepts.
const maxEventMessage = 1024

// recordStartFailure creates the Event.
func recordStartFailure(ctx context.Context, events typedcorev1.EventsGetter, ref podRef, reason, message string, now time.Time) error {
	if len(message) > maxEventMessage {
		message = message[:maxEventMessage-3] + "..."
	}
	t := metav1.NewTime(now)
	ev := &corev1.Event{
		ObjectMeta: metav1.ObjectMeta{GenerateName: ref.name + ".", Namespace: ref.namespace},
		InvolvedObject: corev1.ObjectReference{APIVersion: "v1", Kind: "Pod", Namespace: ref.namespace, Name: ref.name,
			UID: types.UID(ref.uid)},
		Reason: reason, Message: message, Type: corev1.EventTypeWarning,
		Source:         corev1.EventSource{Component: "dots-server"},
		FirstTimestamp: t, LastTimestamp: t, Count: 1,
		ReportingController: "dots.csi.dev/server", ReportingInstance: ref.name,
	}
	_, err := events.Events(ref.namespace).Create(ctx, ev, metav1.CreateOptions{})
	return err
}
