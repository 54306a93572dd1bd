package chart_test

import (
	"context"
	"slices"
	"strings"
	"testing"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/version"
	"k8s.io/apiserver/pkg/admission"
	plugincel "k8s.io/apiserver/pkg/admission/plugin/cel"
	"k8s.io/apiserver/pkg/admission/plugin/policy/validating"
	"k8s.io/apiserver/pkg/admission/plugin/webhook/matchconditions"
	celconfig "k8s.io/apiserver/pkg/apis/cel"
	"k8s.io/apiserver/pkg/authentication/user"
	"k8s.io/apiserver/pkg/cel/environment"

	"github.com/regcred-webhook/regcred-webhook/pkg/config"
	"github.com/regcred-webhook/regcred-webhook/pkg/pullsecret"
)

// The label every managed copy carries (pkg/pullsecret) and the policy requires.
const managedLabel, managedValue = "app.kubernetes.io/managed-by", "regcred-webhook"

// managedSecretsValidations are the policy's rules as the API server gets
// them, for a secretName. The e2e suite exercises the same expressions on a
// real kube-apiserver.
func managedSecretsValidations(secretName string) []admissionregistrationv1.Validation {
	forbidden := ptr(metav1.StatusReasonForbidden)
	return []admissionregistrationv1.Validation{
		{
			Expression: "object.metadata.name == '" + secretName + "'",
			Message:    "rule name: the regcred-webhook ServiceAccount may only create or update Secrets named " + secretName,
			Reason:     forbidden,
		},
		{
			Expression: "has(object.type) && object.type == 'kubernetes.io/dockerconfigjson'",
			Message:    "rule type: the regcred-webhook ServiceAccount may only create or update Secrets of type kubernetes.io/dockerconfigjson",
			Reason:     forbidden,
		},
		{
			Expression: "has(object.metadata.labels) && 'app.kubernetes.io/managed-by' in object.metadata.labels && " +
				"object.metadata.labels['app.kubernetes.io/managed-by'] == 'regcred-webhook'",
			Message: "rule managed-label: the regcred-webhook ServiceAccount may only create or update Secrets labelled " +
				"app.kubernetes.io/managed-by=regcred-webhook",
			Reason: forbidden,
		},
		{
			Expression: "request.operation != 'UPDATE' || (has(oldObject.metadata.labels) && 'app.kubernetes.io/managed-by' in oldObject.metadata.labels && " +
				"oldObject.metadata.labels['app.kubernetes.io/managed-by'] == 'regcred-webhook')",
			Message: "rule managed-before-update: the regcred-webhook ServiceAccount may only update Secrets already labelled " +
				"app.kubernetes.io/managed-by=regcred-webhook; a Secret without that label is the user's and is never taken over",
			Reason: forbidden,
		},
	}
}

// TestManagedSecretsPolicy: the ValidatingAdmissionPolicy that limits the
// webhook's own Secret writes (RBAC cannot restrict create by name) is always
// rendered, judges only the webhook's ServiceAccount (as the ServiceAccount
// helper names it), fails closed, and is bound with Deny.
func TestManagedSecretsPolicy(t *testing.T) {
	for _, tc := range []struct {
		name       string
		o          renderOpts
		policy     string // the policy's and the binding's name
		user       string // the one username the matchCondition accepts
		secretName string
	}{
		{"defaults", renderOpts{files: []string{"minimal.yaml"}},
			fullname + "-managed-secrets", "system:serviceaccount:" + releaseNS + ":" + fullname, "regcred"},
		{"every option on", renderOpts{files: []string{"everything.yaml"}},
			fullname + "-managed-secrets", "system:serviceaccount:" + releaseNS + ":" + fullname, "harbor-pull"},
		{"no cert-manager, existingSecret", renderOpts{files: []string{"no-cert-manager.yaml"}},
			fullname + "-managed-secrets", "system:serviceaccount:" + releaseNS + ":" + fullname, "regcred"},
		{"serviceAccount.name", renderOpts{files: []string{"minimal.yaml"}, set: []string{"serviceAccount.name=pull-secret-writer"}},
			fullname + "-managed-secrets", "system:serviceaccount:" + releaseNS + ":pull-secret-writer", "regcred"},
		{"fullnameOverride", renderOpts{files: []string{"minimal.yaml"}, set: []string{"fullnameOverride=pull-secrets"}},
			"pull-secrets-managed-secrets", "system:serviceaccount:" + releaseNS + ":pull-secrets", "regcred"},
		{"other release and namespace", renderOpts{release: "platform", namespace: "platform-system", files: []string{"minimal.yaml"}},
			"platform-regcred-webhook-managed-secrets", "system:serviceaccount:platform-system:platform-regcred-webhook", "regcred"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m := render(t, tc.o)
			eqJSON(t, "ValidatingAdmissionPolicies", m.names("ValidatingAdmissionPolicy"), []string{tc.policy})
			eqJSON(t, "ValidatingAdmissionPolicyBindings", m.names("ValidatingAdmissionPolicyBinding"), []string{tc.policy})
			p := get[admissionregistrationv1.ValidatingAdmissionPolicy](t, m, "ValidatingAdmissionPolicy", tc.policy)
			b := get[admissionregistrationv1.ValidatingAdmissionPolicyBinding](t, m, "ValidatingAdmissionPolicyBinding", tc.policy)
			for _, meta := range []metav1.ObjectMeta{p.ObjectMeta, b.ObjectMeta} {
				if _, hook := meta.Annotations["helm.sh/hook"]; hook {
					t.Errorf("%s is a hook: the policy must live exactly as long as the webhook's RBAC", meta.Name)
				}
			}

			// The ServiceAccount the policy names is the Deployment's.
			d := get[appsv1.Deployment](t, m, "Deployment", strings.TrimSuffix(tc.policy, "-managed-secrets"))
			eq(t, "the policy's user is the Deployment's ServiceAccount", tc.user,
				"system:serviceaccount:"+d.Namespace+":"+d.Spec.Template.Spec.ServiceAccountName)

			eq(t, "failurePolicy", deref(p.Spec.FailurePolicy), admissionregistrationv1.Fail)
			if p.Spec.ParamKind != nil || len(p.Spec.Variables) != 0 || len(p.Spec.AuditAnnotations) != 0 {
				t.Errorf("paramKind/variables/auditAnnotations set: %+v", p.Spec)
			}
			eqJSON(t, "matchConstraints", p.Spec.MatchConstraints, &admissionregistrationv1.MatchResources{
				MatchPolicy: ptr(admissionregistrationv1.Equivalent),
				ResourceRules: []admissionregistrationv1.NamedRuleWithOperations{{
					RuleWithOperations: admissionregistrationv1.RuleWithOperations{
						Operations: []admissionregistrationv1.OperationType{admissionregistrationv1.Create, admissionregistrationv1.Update},
						Rule: admissionregistrationv1.Rule{
							APIGroups: []string{""}, APIVersions: []string{"v1"}, Resources: []string{"secrets"},
						},
					},
				}},
			})
			eqJSON(t, "matchConditions", p.Spec.MatchConditions, []admissionregistrationv1.MatchCondition{{
				Name:       "webhook-service-account",
				Expression: `request.userInfo.username == "` + tc.user + `"`,
			}})
			eqJSON(t, "validations", p.Spec.Validations, managedSecretsValidations(tc.secretName))
			for _, v := range p.Spec.Validations {
				if v.MessageExpression != "" || strings.Contains(v.Message, "\n") {
					t.Errorf("validation %q: want one static line of message", v.Expression)
				}
			}

			eqJSON(t, "binding spec", b.Spec, admissionregistrationv1.ValidatingAdmissionPolicyBindingSpec{
				PolicyName:        tc.policy,
				ValidationActions: []admissionregistrationv1.ValidationAction{admissionregistrationv1.Deny},
			})
		})
	}
}

// secretWrite is one request the API server would put to the policy.
type secretWrite struct {
	user      string
	op        admission.Operation
	old, obj  *corev1.Secret
	namespace string // default team-a
}

// TestManagedSecretsPolicyDecisions evaluates the rendered policy the way
// kube-apiserver does (its own ValidatingAdmissionPolicy validator and CEL
// environment, at the chart's minimum Kubernetes version 1.30): the
// webhook's own writes (pkg/pullsecret Desired and Refresh) pass, the
// privilege escalation and a take-over of a user's Secret are denied with
// the rule's message, and nobody else's writes are judged.
func TestManagedSecretsPolicyDecisions(t *testing.T) {
	const (
		webhookSA = "system:serviceaccount:" + releaseNS + ":" + fullname
		cleanupSA = "system:serviceaccount:" + releaseNS + ":" + fullname + "-cleanup"
	)
	ref := config.SecretRef{Namespace: releaseNS, Name: fullname + "-source"}
	snap := &pullsecret.Snapshot{Data: []byte(`{"auths":{"harbor.example.com":{"auth":"cm9ib3Q6dG9rZW4="}}}`), Hash: "sha256:new"}
	stale := &pullsecret.Snapshot{Data: []byte(`{"auths":{"harbor.example.com":{"auth":"cm9ib3Q6b2xk"}}}`), Hash: "sha256:old"}

	managed := func(name string) *corev1.Secret {
		s := pullsecret.Desired(name, "team-a", ref, stale)
		s.ResourceVersion, s.UID = "41", "uid-1"
		return s
	}
	// What the user (or an attacker through the webhook's RBAC) may bring.
	secret := func(name string, typ corev1.SecretType, labels map[string]string) *corev1.Secret {
		return &corev1.Secret{
			ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "team-a", Labels: labels, ResourceVersion: "41", UID: "uid-2"},
			Type:       typ,
			Data:       map[string][]byte{corev1.DockerConfigJsonKey: stale.Data},
		}
	}
	labelled := map[string]string{managedLabel: managedValue}
	// The escalation: a token Secret for a privileged ServiceAccount, which
	// the token controller would fill in, in kube-system.
	token := func(labels map[string]string) *corev1.Secret {
		return &corev1.Secret{
			ObjectMeta: metav1.ObjectMeta{
				Name: "regcred", Namespace: "kube-system", Labels: labels,
				Annotations: map[string]string{corev1.ServiceAccountNameKey: "clusterrole-aggregation-controller"},
			},
			Type: corev1.SecretTypeServiceAccountToken,
		}
	}
	withoutLabel := func(s *corev1.Secret) *corev1.Secret {
		s = s.DeepCopy()
		delete(s.Labels, managedLabel)
		return s
	}
	withLabels := func(s *corev1.Secret, kv ...string) *corev1.Secret {
		s = s.DeepCopy()
		if s.Labels == nil {
			s.Labels = map[string]string{}
		}
		for i := 0; i+1 < len(kv); i += 2 {
			s.Labels[kv[i]] = kv[i+1]
		}
		return s
	}

	for _, tc := range []struct {
		name string
		o    renderOpts
		req  secretWrite
		deny []string // the rules that deny, by name; none: admitted
	}{
		// The webhook's own writes.
		{name: "create the managed copy (pullsecret.Desired)",
			req: secretWrite{user: webhookSA, op: admission.Create, obj: pullsecret.Desired("regcred", "team-a", ref, snap)}},
		{name: "refresh a stale managed copy (pullsecret.Refresh)",
			req: secretWrite{user: webhookSA, op: admission.Update, old: managed("regcred"),
				obj: pullsecret.Refresh(managed("regcred"), ref, snap)}},
		{name: "refresh keeps labels others added",
			req: secretWrite{user: webhookSA, op: admission.Update, old: withLabels(managed("regcred"), "team", "a"),
				obj: pullsecret.Refresh(withLabels(managed("regcred"), "team", "a"), ref, snap)}},
		{name: "restore a copy whose data was edited by hand",
			req: secretWrite{user: webhookSA, op: admission.Update,
				old: func() *corev1.Secret { s := managed("regcred"); s.Data = map[string][]byte{"x": []byte("y")}; return s }(),
				obj: pullsecret.Refresh(managed("regcred"), ref, snap)}},

		// The privilege escalation through create on Secrets.
		{name: "service-account-token Secret in kube-system, labelled",
			req: secretWrite{user: webhookSA, op: admission.Create, obj: token(labelled), namespace: "kube-system"}, deny: []string{"type"}},
		{name: "service-account-token Secret in kube-system, unlabelled",
			req: secretWrite{user: webhookSA, op: admission.Create, obj: token(nil), namespace: "kube-system"}, deny: []string{"type", "managed-label"}},
		{name: "Opaque Secret with the managed name and label",
			req: secretWrite{user: webhookSA, op: admission.Create, obj: secret("regcred", corev1.SecretTypeOpaque, labelled)}, deny: []string{"type"}},
		{name: "dockerconfigjson Secret under another name",
			req: secretWrite{user: webhookSA, op: admission.Create, obj: secret("harbor-robot", corev1.SecretTypeDockerConfigJson, labelled)}, deny: []string{"name"}},
		{name: "managed copy without the managed label",
			req: secretWrite{user: webhookSA, op: admission.Create, obj: secret("regcred", corev1.SecretTypeDockerConfigJson, nil)}, deny: []string{"managed-label"}},
		{name: "managed label with another value",
			req:  secretWrite{user: webhookSA, op: admission.Create, obj: secret("regcred", corev1.SecretTypeDockerConfigJson, map[string]string{managedLabel: "Helm"})},
			deny: []string{"managed-label"}},

		// Never take over a user's Secret, never give up the label.
		{name: "take over a user's regcred",
			req: secretWrite{user: webhookSA, op: admission.Update, old: secret("regcred", corev1.SecretTypeDockerConfigJson, nil),
				obj: pullsecret.Refresh(secret("regcred", corev1.SecretTypeDockerConfigJson, nil), ref, snap)},
			deny: []string{"managed-before-update"}},
		{name: "take over a user's regcred labelled by another manager",
			req: secretWrite{user: webhookSA, op: admission.Update, old: secret("regcred", corev1.SecretTypeDockerConfigJson, map[string]string{managedLabel: "Helm"}),
				obj: pullsecret.Refresh(secret("regcred", corev1.SecretTypeDockerConfigJson, map[string]string{managedLabel: "Helm"}), ref, snap)},
			deny: []string{"managed-before-update"}},
		{name: "update that drops the managed label",
			req:  secretWrite{user: webhookSA, op: admission.Update, old: managed("regcred"), obj: withoutLabel(managed("regcred"))},
			deny: []string{"managed-label"}},
		{name: "update of a user's Secret that keeps it unlabelled",
			req: secretWrite{user: webhookSA, op: admission.Update, old: secret("regcred", corev1.SecretTypeDockerConfigJson, nil),
				obj: secret("regcred", corev1.SecretTypeDockerConfigJson, map[string]string{"team": "a"})},
			deny: []string{"managed-label", "managed-before-update"}},
		{name: "update of a managed Opaque Secret",
			req: secretWrite{user: webhookSA, op: admission.Update, old: secret("regcred", corev1.SecretTypeOpaque, labelled),
				obj: secret("regcred", corev1.SecretTypeOpaque, labelled)},
			deny: []string{"type"}},

		// Nobody else is judged.
		{name: "cluster admin creates a token Secret",
			req: secretWrite{user: "kubernetes-admin", op: admission.Create, obj: token(nil), namespace: "kube-system"}},
		{name: "the cleanup hook's ServiceAccount",
			req: secretWrite{user: cleanupSA, op: admission.Create, obj: token(nil), namespace: "kube-system"}},
		{name: "a ServiceAccount of the same name in another namespace",
			req: secretWrite{user: "system:serviceaccount:team-a:" + fullname, op: admission.Create, obj: token(nil), namespace: "kube-system"}},
		{name: "a user updates their own regcred",
			req: secretWrite{user: "alice", op: admission.Update, old: secret("regcred", corev1.SecretTypeDockerConfigJson, nil),
				obj: secret("regcred", corev1.SecretTypeDockerConfigJson, labelled)}},

		// The names come from values.
		{name: "serviceAccount.name: the named ServiceAccount is judged",
			o:    renderOpts{files: []string{"minimal.yaml"}, set: []string{"serviceAccount.name=pull-secret-writer"}},
			req:  secretWrite{user: "system:serviceaccount:" + releaseNS + ":pull-secret-writer", op: admission.Create, obj: token(labelled), namespace: "kube-system"},
			deny: []string{"type"}},
		{name: "serviceAccount.name: the full name is no longer judged",
			o:   renderOpts{files: []string{"minimal.yaml"}, set: []string{"serviceAccount.name=pull-secret-writer"}},
			req: secretWrite{user: webhookSA, op: admission.Create, obj: token(labelled), namespace: "kube-system"}},
		{name: "secretName: the configured name passes",
			o:   renderOpts{files: []string{"everything.yaml"}},
			req: secretWrite{user: webhookSA, op: admission.Create, obj: pullsecret.Desired("harbor-pull", "team-a", ref, snap)}},
		{name: "secretName: the default name no longer passes",
			o:    renderOpts{files: []string{"everything.yaml"}},
			req:  secretWrite{user: webhookSA, op: admission.Create, obj: pullsecret.Desired("regcred", "team-a", ref, snap)},
			deny: []string{"name"}},
		{name: "other release namespace",
			o:    renderOpts{release: "platform", namespace: "platform-system", files: []string{"minimal.yaml"}},
			req:  secretWrite{user: "system:serviceaccount:platform-system:platform-regcred-webhook", op: admission.Create, obj: token(labelled), namespace: "kube-system"},
			deny: []string{"type"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			o := tc.o
			if o.files == nil {
				o.files = []string{"minimal.yaml"}
			}
			m := render(t, o)
			ps := m.find("ValidatingAdmissionPolicy")
			if len(ps) != 1 {
				t.Fatalf("ValidatingAdmissionPolicies = %v, want one", ps)
			}
			p := decode[admissionregistrationv1.ValidatingAdmissionPolicy](t, ps[0])
			got := evaluatePolicy(t, p, tc.req)
			slices.Sort(got)
			want := slices.Clone(tc.deny)
			slices.Sort(want)
			if !slices.Equal(got, want) {
				t.Errorf("denied by rules %v, want %v", got, want)
			}
		})
	}
}

// evaluatePolicy runs the policy on one request with kube-apiserver's own
// validator, compiled as the ValidatingAdmissionPolicy plugin compiles it
// (plugin.go compilePolicy), in the CEL environment a 1.30 API server
// accepts new expressions in. It returns the rules (the word after "rule "
// in the message) that deny; an expression that does not compile or errors
// fails the test.
func evaluatePolicy(t *testing.T, p *admissionregistrationv1.ValidatingAdmissionPolicy, req secretWrite) []string {
	t.Helper()
	const mode = environment.NewExpressions
	compiler, err := plugincel.NewCompositedCompiler(environment.MustBaseEnvSet(version.MajorMinor(1, 30)))
	if err != nil {
		t.Fatal(err)
	}
	vars := plugincel.OptionalVariableDeclarations{HasParams: p.Spec.ParamKind != nil, HasAuthorizer: true}

	conditions := make([]plugincel.ExpressionAccessor, len(p.Spec.MatchConditions))
	for i := range p.Spec.MatchConditions {
		conditions[i] = (*matchconditions.MatchCondition)(&p.Spec.MatchConditions[i])
	}
	matchFilter := compiler.CompileCondition(conditions, vars, mode)
	validations := make([]plugincel.ExpressionAccessor, len(p.Spec.Validations))
	messages := make([]plugincel.ExpressionAccessor, len(p.Spec.Validations))
	for i, v := range p.Spec.Validations {
		validations[i] = &validating.ValidationCondition{Expression: v.Expression, Message: v.Message, Reason: v.Reason}
		if v.MessageExpression != "" {
			messages[i] = &validating.MessageExpressionCondition{MessageExpression: v.MessageExpression}
		}
	}
	validationFilter := compiler.CompileCondition(validations, vars, mode)
	messageFilter := compiler.CompileCondition(messages, plugincel.OptionalVariableDeclarations{HasParams: vars.HasParams}, mode)
	auditFilter := compiler.CompileCondition(nil, vars, mode)
	for _, f := range []plugincel.ConditionEvaluator{matchFilter, validationFilter, messageFilter} {
		if errs := f.CompilationErrors(); len(errs) != 0 {
			t.Fatalf("the policy does not compile for Kubernetes 1.30: %v", errs)
		}
	}
	v := validating.NewValidator(validationFilter,
		matchconditions.NewMatcher(matchFilter, p.Spec.FailurePolicy, "policy", "validate", p.Name),
		auditFilter, messageFilter, p.Spec.FailurePolicy, nil)

	ns := req.namespace
	if ns == "" {
		ns = "team-a"
	}
	gvk := corev1.SchemeGroupVersion.WithKind("Secret")
	gvr := corev1.SchemeGroupVersion.WithResource("secrets")
	var old admission.LazyObject
	var oldObj runtime.Object // a nil interface on CREATE, as the API server has it
	if req.old != nil {
		old = admission.NewLazyObject(req.old)
		oldObj = req.old
	}
	obj := admission.NewLazyObject(req.obj)
	attrs := admission.NewAttributesRecord(req.obj, oldObj, gvk, ns, req.obj.Name, gvr, "", req.op,
		nil, false, &user.DefaultInfo{Name: req.user})
	res := v.Validate(context.Background(), gvr, &admission.VersionedAttributes{
		Attributes: attrs, VersionedKind: gvk, VersionedObject: obj, VersionedOldObject: old,
	}, nil, nil, celconfig.RuntimeCELCostBudget, nil)

	var denied []string
	for _, d := range res.Decisions {
		switch {
		case d.Evaluation == validating.EvalError:
			t.Errorf("evaluation error (failurePolicy %s denies): %s", deref(p.Spec.FailurePolicy), d.Message)
		case d.Action == validating.ActionDeny:
			rule, ok := strings.CutPrefix(d.Message, "rule ")
			rule, _, ok2 := strings.Cut(rule, ":")
			if !ok || !ok2 {
				t.Errorf("deny message %q does not name its rule (\"rule <name>: ...\")", d.Message)
			}
			eq(t, "deny reason", d.Reason, metav1.StatusReasonForbidden)
			denied = append(denied, rule)
		}
	}
	return denied
}
