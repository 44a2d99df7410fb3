// Package kubeclient is how the controller's parts that talk to the
// Kubernetes API (placements, server failover) find it and their namespace,
// so they all connect the same way: $KUBECONFIG when set (development and
// the e2e test), else as the pod they run in.
package kubeclient

import (
	"fmt"
	"os"
	"strings"

	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
)

const namespaceFile = "/var/run/secrets/kubernetes.io/serviceaccount/namespace"

// Config connects with $KUBECONFIG when set, else as the pod it runs in.
func Config() (*rest.Config, error) {
	if kc := os.Getenv("KUBECONFIG"); kc != "" {
		return clientcmd.BuildConfigFromFlags("", kc)
	}
	return rest.InClusterConfig()
}

// Namespace is given when not empty, else $POD_NAMESPACE, else the
// namespace of the pod's service account.
func Namespace(given string) (string, error) {
	if given != "" {
		return given, nil
	}
	if ns := os.Getenv("POD_NAMESPACE"); ns != "" {
		return ns, nil
	}
	b, err := os.ReadFile(namespaceFile)
	if err != nil {
		return "", fmt.Errorf("no namespace given, no $POD_NAMESPACE, and %w", err)
	}
	return strings.TrimSpace(string(b)), nil
}
