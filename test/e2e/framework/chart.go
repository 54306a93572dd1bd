package framework

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

const (
	// Release and Namespace are what the tests install the chart as; the chart's
	// fullname is then "regcred-webhook".
	Release   = "regcred-webhook"
	Namespace = "regcred-webhook"
	Fullname  = "regcred-webhook"
	// ServiceAccount is the identity the webhook runs as, by impersonation.
	ServiceAccount = "system:serviceaccount:" + Namespace + ":" + Fullname
)

// Render runs `helm template` on the repository's chart with the values files.
func Render(repoRoot string, valuesFiles ...string) ([]*unstructured.Unstructured, error) {
	if _, err := Tool(repoRoot, "helm"); err != nil {
		return nil, err
	}
	helm, err := Tool(repoRoot, "helm-path")
	if err != nil {
		return nil, err
	}
	args := []string{"template", Release, filepath.Join(repoRoot, "charts/regcred-webhook"), "--namespace", Namespace}
	for _, f := range valuesFiles {
		args = append(args, "--values", f)
	}
	var stderr bytes.Buffer
	cmd := exec.Command(helm, args...)
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("helm template: %w: %s", err, stderr.String())
	}
	return DecodeYAML(out)
}

// DecodeYAML splits a multi-document YAML stream into objects, skipping empty ones.
func DecodeYAML(data []byte) ([]*unstructured.Unstructured, error) {
	r := utilyaml.NewYAMLReader(bufio.NewReader(bytes.NewReader(data)))
	var objs []*unstructured.Unstructured
	for {
		doc, err := r.Read()
		if errors.Is(err, io.EOF) {
			return objs, nil
		}
		if err != nil {
			return nil, err
		}
		u := &unstructured.Unstructured{}
		if err := utilyaml.Unmarshal(doc, &u.Object); err != nil {
			return nil, err
		}
		if len(u.Object) > 0 {
			objs = append(objs, u)
		}
	}
}

// ReadYAMLFile decodes a manifest file such as deploy/regcred-webhook.yaml.
func ReadYAMLFile(path string) ([]*unstructured.Unstructured, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	return DecodeYAML(b)
}

// Find returns the rendered object of kind and name, or nil.
func Find(objs []*unstructured.Unstructured, kind, name string) *unstructured.Unstructured {
	for _, o := range objs {
		if o.GetKind() == kind && o.GetName() == name {
			return o
		}
	}
	return nil
}

// OfKind returns the rendered objects of the given kinds, in render order.
func OfKind(objs []*unstructured.Unstructured, kinds ...string) []*unstructured.Unstructured {
	var out []*unstructured.Unstructured
	for _, o := range objs {
		for _, k := range kinds {
			if o.GetKind() == k {
				out = append(out, o.DeepCopy())
			}
		}
	}
	return out
}

// Apply creates each object (in the release namespace when namespaced and unset),
// or updates it when it exists.
func Apply(ctx context.Context, c client.Client, objs []*unstructured.Unstructured, opts ...client.CreateOption) error {
	for _, o := range objs {
		o = o.DeepCopy()
		namespaced, err := c.IsObjectNamespaced(o)
		if err != nil {
			return fmt.Errorf("%s %s: %w", o.GetKind(), o.GetName(), err)
		}
		if namespaced && o.GetNamespace() == "" {
			o.SetNamespace(Namespace)
		}
		err = c.Create(ctx, o, opts...)
		if apierrors.IsAlreadyExists(err) && len(opts) == 0 {
			cur := &unstructured.Unstructured{}
			cur.SetGroupVersionKind(o.GroupVersionKind())
			if err = c.Get(ctx, client.ObjectKeyFromObject(o), cur); err == nil {
				o.SetResourceVersion(cur.GetResourceVersion())
				err = c.Update(ctx, o)
			}
		}
		if err != nil {
			return fmt.Errorf("applying %s %s/%s: %w", o.GetKind(), o.GetNamespace(), o.GetName(), err)
		}
	}
	return nil
}
