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
	role     string // ClusterRole/<name> or Role/<namespace>/<name>
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
		add("ClusterRole/"+o.Metadata.Name, decode[rbacv1.ClusterRole](t, o).Rules)
	}
	for _, o := range m.find("Role") {
		add("Role/"+o.Metadata.Namespace+"/"+o.Metadata.Name, decode[rbacv1.Role](t, o).Rules)
	}
	return out
}

// TestRBACLeastPrivilege compares the rendered RBAC with exactly what the
// binary needs: any extra verb, resource, wildcard or missing resourceNames
// restriction fails, and so does a missing grant.
func TestRBACLeastPrivilege(t *testing.T) {
	const webhookRole, cleanupRole = "ClusterRole/" + fullname, "ClusterRole/" + fullname + "-cleanup"
	cluster := func(secretName string) []grant {
		g := []grant{{webhookRole, "", "secrets", "create", ""}}
		for _, v := range []string{"get", "list", "watch", "update"} {
			g = append(g, grant{webhookRole, "", "secrets", v, secretName})
		}
		for _, group := range []string{"", "events.k8s.io"} {
			for _, v := range []string{"create", "patch"} {
				g = append(g, grant{webhookRole, group, "events", v, ""})
			}
		}
		// Always: the reconciler GETs a namespace before restoring a deleted
		// copy in it, to check it is in scope.
		g = append(g, grant{webhookRole, "", "namespaces", "get", ""})
		return g
	}
	// The post-delete cleanup hook's own ClusterRole: list and delete the
	// managed copies, nothing else.
	cleanup := func(secretName string) []grant {
		return []grant{
			{cleanupRole, "", "secrets", "list", secretName},
			{cleanupRole, "", "secrets", "delete", secretName},
		}
	}
	namespaced := func(source string) []grant {
		role := "Role/" + releaseNS + "/" + fullname
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
	// provisionAllNamespaces adds list and watch to the namespaces get.
	namespaces := []grant{
		{webhookRole, "", "namespaces", "list", ""},
		{webhookRole, "", "namespaces", "watch", ""},
	}
	pods := []grant{
		{webhookRole, "", "pods", "get", ""},
		{webhookRole, "", "pods", "list", ""},
		{webhookRole, "", "pods", "watch", ""},
		{webhookRole, "", "pods", "delete", ""},
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
		{"cleanupOnUninstall adds only the hook's own role", renderOpts{files: []string{"minimal.yaml"}, set: []string{"reconcile.cleanupOnUninstall=true"}},
			join(cluster("regcred"), cleanup("regcred"), namespaced(fullname+"-source"))},
		{"every option on", renderOpts{files: []string{"everything.yaml"}},
			join(cluster("harbor-pull"), namespaces, pods, cleanup("harbor-pull"), namespaced(fullname+"-source"))},
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
					case g.role == webhookRole && g.verb == "create" && g.names == "":
					case g.role == webhookRole && g.names != "" && slices.Contains([]string{"get", "list", "watch", "update"}, g.verb):
					case g.role == cleanupRole && g.names != "" && slices.Contains([]string{"list", "delete"}, g.verb):
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

			// Namespaces in one rule, get alone or get/list/watch: never a
			// second rule that could drift from the first.
			for _, o := range m.find("ClusterRole") {
				n := 0
				for _, r := range decode[rbacv1.ClusterRole](t, o).Rules {
					if slices.Contains(r.Resources, "namespaces") {
						n++
					}
				}
				want := 0
				if o.Metadata.Name == fullname {
					want = 1
				}
				if n != want {
					t.Errorf("%s has %d rules on namespaces, want %d", o, n, want)
				}
			}

			// One Role and one ClusterRole for the webhook, one ClusterRole for
			// the cleanup hook; each bound to its own ServiceAccount only.
			hook := slices.ContainsFunc(tc.want, func(g grant) bool { return g.role == cleanupRole })
			wantClusterRoles := []string{fullname}
			if hook {
				wantClusterRoles = append(wantClusterRoles, fullname+"-cleanup")
			}
			eqJSON(t, "ClusterRoles", m.names("ClusterRole"), wantClusterRoles)
			eqJSON(t, "ClusterRoleBindings", m.names("ClusterRoleBinding"), wantClusterRoles)
			eqJSON(t, "Roles", m.names("Role"), []string{fullname})
			eqJSON(t, "RoleBindings", m.names("RoleBinding"), []string{fullname})
			for _, o := range append(m.find("ClusterRoleBinding"), m.find("RoleBinding")...) {
				var ref rbacv1.RoleRef
				var subjects []rbacv1.Subject
				if o.Kind == "ClusterRoleBinding" {
					b := decode[rbacv1.ClusterRoleBinding](t, o)
					ref, subjects = b.RoleRef, b.Subjects
				} else {
					b := decode[rbacv1.RoleBinding](t, o)
					ref, subjects = b.RoleRef, b.Subjects
				}
				// <fullname> binds the webhook's role to the webhook's
				// ServiceAccount, <fullname>-cleanup the hook's to the hook's.
				eq(t, o.String()+" roleRef name", ref.Name, o.Metadata.Name)
				eqJSON(t, o.String()+" subjects", subjects, []rbacv1.Subject{
					{Kind: "ServiceAccount", Name: o.Metadata.Name, Namespace: releaseNS},
				})
			}
		})
	}
}
