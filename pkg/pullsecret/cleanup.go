package pullsecret

import (
	"context"
	"errors"
	"fmt"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/fields"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/regcred-webhook/regcred-webhook/pkg/config"
)

// Cleanup deletes every managed copy in the cluster: the Helm post-delete hook runs it
// (`regcred-webhook cleanup`) when reconcile.cleanupOnUninstall is on. It lists by the
// managed name (the only list the RBAC allows) and deletes only Secrets that carry the
// managed label, each with a precondition on its UID and resourceVersion so a Secret
// replaced in between by someone else is not deleted. One failure does not stop the
// others; the error joins them all.
func Cleanup(ctx context.Context, c client.Client, cfg *config.Config) (deleted int, err error) {
	var list corev1.SecretList
	if err := c.List(ctx, &list,
		client.MatchingFieldsSelector{Selector: fields.OneTermEqualSelector("metadata.name", cfg.SecretName)},
		client.MatchingLabels{ManagedByLabel: ManagedByValue},
	); err != nil {
		return 0, fmt.Errorf("listing managed Secrets %q: %w", cfg.SecretName, err)
	}
	var errs []error
	for i := range list.Items {
		s := &list.Items[i]
		if !IsManaged(s) { // the label selector said so; do not trust a server that ignored it
			continue
		}
		err := c.Delete(ctx, s, client.Preconditions{UID: &s.UID, ResourceVersion: &s.ResourceVersion})
		switch {
		case err == nil:
			deleted++
		case apierrors.IsNotFound(err):
		default:
			errs = append(errs, fmt.Errorf("deleting Secret %s/%s: %w", s.Namespace, s.Name, err))
		}
	}
	return deleted, errors.Join(errs...)
}
