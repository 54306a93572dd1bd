// Package pullsecret keeps the managed pull Secret: the hot-path Ensure that the
// admission handler calls, the source Secret it copies, and the reconciler.
package pullsecret

import (
	"bytes"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/regcred-webhook/regcred-webhook/pkg/config"
)

const (
	// ManagedByLabel marks the copies this webhook owns. A Secret without it is never
	// modified or deleted, whatever its name.
	ManagedByLabel = "app.kubernetes.io/managed-by"
	// ManagedByValue is ManagedByLabel's value on a managed copy.
	ManagedByValue = "regcred-webhook"
	// SourceAnnotation names the source Secret (namespace/name) a copy was made from.
	SourceAnnotation = "regcred-webhook.io/source"
	// HashAnnotation is the hash of the copied .dockerconfigjson; it lets a human see
	// at a glance whether a copy is current, and the reconciler compare cheaply.
	HashAnnotation = "regcred-webhook.io/content-hash"
)

// IsManaged reports whether s carries the managed label.
func IsManaged(s *corev1.Secret) bool {
	return s.Labels[ManagedByLabel] == ManagedByValue
}

// IsCurrent reports whether the managed copy s equals what Desired would build from
// snap: same type, exactly the one data key with the same bytes, and the annotations.
func IsCurrent(s *corev1.Secret, ref config.SecretRef, snap *Snapshot) bool {
	return IsManaged(s) &&
		s.Type == corev1.SecretTypeDockerConfigJson &&
		len(s.Data) == 1 && len(s.StringData) == 0 &&
		bytes.Equal(s.Data[corev1.DockerConfigJsonKey], snap.Data) &&
		s.Annotations[HashAnnotation] == snap.Hash &&
		s.Annotations[SourceAnnotation] == ref.String()
}

// Desired is the managed copy for namespace. It copies no label or annotation from
// the source: an Argo CD tracking label there would make Argo CD prune every copy.
func Desired(name, namespace string, ref config.SecretRef, snap *Snapshot) *corev1.Secret {
	return &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{
			Name:        name,
			Namespace:   namespace,
			Labels:      map[string]string{ManagedByLabel: ManagedByValue},
			Annotations: map[string]string{SourceAnnotation: ref.String(), HashAnnotation: snap.Hash},
		},
		Type: corev1.SecretTypeDockerConfigJson,
		Data: map[string][]byte{corev1.DockerConfigJsonKey: snap.Data},
	}
}

// Refresh returns a copy of the managed Secret cur brought to the desired content,
// keeping metadata that others added (labels, annotations, owner references).
func Refresh(cur *corev1.Secret, ref config.SecretRef, snap *Snapshot) *corev1.Secret {
	s := cur.DeepCopy()
	if s.Labels == nil {
		s.Labels = map[string]string{}
	}
	if s.Annotations == nil {
		s.Annotations = map[string]string{}
	}
	s.Labels[ManagedByLabel] = ManagedByValue
	s.Annotations[SourceAnnotation] = ref.String()
	s.Annotations[HashAnnotation] = snap.Hash
	s.Data = map[string][]byte{corev1.DockerConfigJsonKey: snap.Data}
	s.StringData = nil
	return s
}
