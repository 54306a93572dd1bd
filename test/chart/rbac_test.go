package chart_test

import (
	"fmt"
	"slices"
	"strings"
	"testing"

	rbacv1 "k8s.io/api/rbac/v1"
)

// grant is one verb on one resource, with the resourceNames it is limited to
// ("" when unrestricted).
type grant struct {
	role     string // ClusterRole or Role/<namespace>
	group    string
	resource string
	verb     string
	names    string
}

func (g grant) String() string {
	s := fmt.Sprintf("%s: %s %s/%s", g.role, g.verb, g.group, g.resource)
	if g.names != "" {
		s += " [" + g.names + "]"
	}
	return s
}

// grants flattens every rule of every ClusterRole and Role rendered (hooks
// included), so a role added later is checked too.
func grants(t *testing.T, m *manifest) []grant {
	t.Helper()
	var out []grant
	add := func(role string, rules []rbacv1.PolicyRule) {
		for _, r := range rules {
			if len(r.NonResourceURLs) != 0 {
				t.Errorf("%s grants non-resource URLs %v", role, r.NonResourceURLs)
			}
			names := strings.Join(r.ResourceNames, ",")
			for _, g := range r.APIGroups {
				for _, res := range r.Resources {
					for _, v := range r.Verbs {
						out = append(out, grant{role, g, res, v, names})
					}
				}
			}
		}
	}
	for _, o := range m.find("ClusterRole") {
		add("ClusterRole", decode[rbacv1.ClusterRole](t, o).Rules)
	}
	for _, o := range m.find("Role") {
		add("Role/"+o.Metadata.Namespace, decode[rbacv1.Role](t, o).Rules)
	}
	return out
}

// TestRBACLeastPrivilege compares the rendered RBAC with exactly what the
// binary needs: any extra verb, resource, wildcard or missing resourceNames
// restriction fails, and so does a missing grant.
func TestRBACLeastPrivilege(t *testing.T) {
	cluster := func(secretName string) []grant {
		g := []grant{{"ClusterRole", "", "secrets", "create", ""}}
		for _, v := range []string{"get", "list", "watch", "update", "patch", "delete"} {
			g = append(g, grant{"ClusterRole", "", "secrets", v, secretName})
		}
		for _, group := range []string{"", "events.k8s.io"} {
			for _, v := range []string{"create", "patch"} {
				g = append(g, grant{"ClusterRole", group, "events", v, ""})
			}
		}
		return g
	}
	namespaced := func(source string) []grant {
		role := "Role/" + releaseNS
		return []grant{
			{role, "", "secrets", "get", source},
			{role, "", "secrets", "list", source},
			{role, "", "secrets", "watch", source},
			{role, "coordination.k8s.io", "leases", "create", ""},
			{role, "coordination.k8s.io", "leases", "get", "regcred-webhook.io"},
			{role, "coordination.k8s.io", "leases", "update", "regcred-webhook.io"},
			{role, "coordination.k8s.io", "leases", "patch", "regcred-webhook.io"},
		}
	}
	namespaces := []grant{
		{"ClusterRole", "", "namespaces", "get", ""},
		{"ClusterRole", "", "namespaces", "list", ""},
		{"ClusterRole", "", "namespaces", "watch", ""},
	}
	pods := []grant{
		{"ClusterRole", "", "pods", "get", ""},
		{"ClusterRole", "", "pods", "list", ""},
		{"ClusterRole", "", "pods", "watch", ""},
		{"ClusterRole", "", "pods", "delete", ""},
	}
	join := func(gs ...[]grant) []grant { return slices.Concat(gs...) }

	for _, tc := range []struct {
		name string
		o    renderOpts
		want []grant
	}{
		{"defaults", renderOpts{files: []string{"minimal.yaml"}},
			join(cluster("regcred"), namespaced(fullname+"-source"))},
		{"existingSecret", renderOpts{files: []string{"existing-secret-issuer.yaml"}},
			join(cluster("regcred"), namespaced("harbor-robot"))},
		{"provisionAllNamespaces", renderOpts{files: []string{"minimal.yaml"}, set: []string{"reconcile.provisionAllNamespaces=true"}},
			join(cluster("regcred"), namespaces, namespaced(fullname+"-source"))},
		{"restartStuckPods", renderOpts{files: []string{"minimal.yaml"}, set: []string{"reconcile.restartStuckPods=true"}},
			join(cluster("regcred"), pods, namespaced(fullname+"-source"))},
		{"cleanupOnUninstall adds no rule", renderOpts{files: []string{"minimal.yaml"}, set: []string{"reconcile.cleanupOnUninstall=true"}},
			join(cluster("regcred"), namespaced(fullname+"-source"))},
		{"every option on", renderOpts{files: []string{"everything.yaml"}},
			join(cluster("harbor-pull"), namespaces, pods, namespaced(fullname+"-source"))},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m := render(t, tc.o)
			got := grants(t, m)

			// The invariants first, with messages that say what is wrong.
			for _, g := range got {
				if g.group == "*" || g.resource == "*" || g.verb == "*" {
					t.Errorf("wildcard: %s", g)
				}
				if g.resource == "secrets" {
					switch {
					case g.verb == "create" && g.names == "":
					case g.role == "ClusterRole" && g.names != "" && slices.Contains([]string{"get", "list", "watch", "update", "patch", "delete"}, g.verb):
					case strings.HasPrefix(g.role, "Role/") && g.names != "" && slices.Contains([]string{"get", "list", "watch"}, g.verb):
					default:
						t.Errorf("secrets grant beyond least privilege: %s", g)
					}
					if strings.Contains(g.names, ",") {
						t.Errorf("secrets grant for more than one name: %s", g)
					}
				}
				if strings.HasPrefix(g.resource, "secrets/") || strings.HasPrefix(g.resource, "pods/") {
					t.Errorf("subresource grant: %s", g)
				}
			}

			// Then the exact set.
			key := func(gs []grant) []string {
				var s []string
				for _, g := range gs {
					s = append(s, g.String())
				}
				slices.Sort(s)
				return s
			}
			gotKeys, wantKeys := key(got), key(tc.want)
			for _, g := range gotKeys {
				if !slices.Contains(wantKeys, g) {
					t.Errorf("unexpected grant: %s", g)
				}
			}
			for _, w := range wantKeys {
				if !slices.Contains(gotKeys, w) {
					t.Errorf("missing grant: %s", w)
				}
			}
			if len(gotKeys) != len(slices.Compact(slices.Clone(gotKeys))) {
				t.Errorf("duplicate grants: %v", gotKeys)
			}

			// One ClusterRole and one Role, bound to the webhook's ServiceAccount
			// (and, for the cleanup hook, to its own).
			eqJSON(t, "ClusterRoles", m.names("ClusterRole"), []string{fullname})
			eqJSON(t, "Roles", m.names("Role"), []string{fullname})
			for _, o := range append(m.find("ClusterRoleBinding"), m.find("RoleBinding")...) {
				var subjects []rbacv1.Subject
				if o.Kind == "ClusterRoleBinding" {
					subjects = decode[rbacv1.ClusterRoleBinding](t, o).Subjects
				} else {
					subjects = decode[rbacv1.RoleBinding](t, o).Subjects
				}
				for _, s := range subjects {
					if s.Kind != "ServiceAccount" || (s.Name != fullname && s.Name != fullname+"-cleanup") {
						t.Errorf("%s binds %s %s", o, s.Kind, s.Name)
					}
				}
			}
		})
	}
}
