{{/*
Chart name, truncated to 63 characters (the DNS label limit of a Service name).
*/}}
{{- define "regcred-webhook.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Full name of every object: "<release>-<chart>", or the release name when it
already contains the chart name (release "regcred-webhook" gives
"regcred-webhook"). Truncated to 63 characters.
*/}}
{{- define "regcred-webhook.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{/*
Chart name and version, for the helm.sh/chart label.
*/}}
{{- define "regcred-webhook.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Labels on every object of the chart.
*/}}
{{- define "regcred-webhook.labels" -}}
helm.sh/chart: {{ include "regcred-webhook.chart" . }}
{{ include "regcred-webhook.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/part-of: regcred-webhook
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{/*
Selector labels: stable for the life of a release (Deployment selectors are
immutable).
*/}}
{{- define "regcred-webhook.selectorLabels" -}}
app.kubernetes.io/name: {{ include "regcred-webhook.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/*
Name of the webhook's ServiceAccount.
*/}}
{{- define "regcred-webhook.serviceAccountName" -}}
{{- default (include "regcred-webhook.fullname" .) .Values.serviceAccount.name }}
{{- end }}

{{/*
Name of the source Secret in the release namespace: existingSecret, or the one
the chart builds from registries.
*/}}
{{- define "regcred-webhook.sourceSecretName" -}}
{{- if .Values.existingSecret }}
{{- .Values.existingSecret }}
{{- else }}
{{- printf "%s-source" (include "regcred-webhook.fullname" .) }}
{{- end }}
{{- end }}

{{/*
Name of the kubernetes.io/tls Secret mounted at --cert-dir.
*/}}
{{- define "regcred-webhook.tlsSecretName" -}}
{{- default (printf "%s-tls" (include "regcred-webhook.fullname" .)) .Values.tls.secretName }}
{{- end }}

{{/*
Name of the serving Certificate; cert-manager.io/inject-ca-from points at it.
*/}}
{{- define "regcred-webhook.servingCertName" -}}
{{- printf "%s-serving-cert" (include "regcred-webhook.fullname" .) }}
{{- end }}

{{/*
Image reference: repository@digest when a digest is given, else
repository:tag with the tag defaulting to the chart's appVersion.
*/}}
{{- define "regcred-webhook.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (.Values.image.tag | default .Chart.AppVersion) }}
{{- end }}
{{- end }}

{{/*
Namespaces the API server never sends to the webhook: the configured ones plus
the release namespace (so the webhook cannot deadlock its own Pods).
*/}}
{{- define "regcred-webhook.skippedNamespaces" -}}
{{- $ns := concat (.Values.excludeNamespaces | default list) (list .Release.Namespace) | uniq }}
{{- toJson $ns }}
{{- end }}

{{/*
The binary's config file (SPEC "Configuration"). The binary parses it strictly:
add no field it does not know. ensureTimeout is 40% of the webhook's
timeoutSeconds, so a slow API server cannot make the API server give up on the
webhook and admit the Pod unpatched.
*/}}
{{- define "regcred-webhook.config" -}}
{{- $config := dict
  "secretName" .Values.secretName
  "sourceSecret" (dict "namespace" .Release.Namespace "name" (include "regcred-webhook.sourceSecretName" .))
  "excludeNamespaces" (.Values.excludeNamespaces | default list)
  "ensureTimeout" (printf "%dms" (mul .Values.webhook.timeoutSeconds 400))
  "reconcile" (dict
    "provisionAllNamespaces" .Values.reconcile.provisionAllNamespaces
    "restartStuckPods" .Values.reconcile.restartStuckPods)
}}
{{- toYaml $config }}
{{- end }}

{{/*
Checks the schema also makes, repeated here for `--skip-schema-validation`
(and Argo CD's skipSchemaValidation), plus what JSON Schema cannot express.
Renders nothing.
*/}}
{{- define "regcred-webhook.validate" -}}
{{- $registries := .Values.registries | default list }}
{{- if and $registries .Values.existingSecret }}
{{- fail "set either registries or existingSecret, not both: the source Secret comes from exactly one of them" }}
{{- end }}
{{- if not (or $registries .Values.existingSecret) }}
{{- fail "set registries ([{host, username, password}]) or existingSecret (a kubernetes.io/dockerconfigjson Secret in the release namespace): the webhook needs one registry credential" }}
{{- end }}
{{- $hosts := dict }}
{{- range $i, $r := $registries }}
{{- if not (and $r.host $r.username $r.password) }}
{{- fail (printf "registries[%d] needs a non-empty host, username and password" $i) }}
{{- end }}
{{- if contains ":" (toString $r.username) }}
{{- fail (printf "registries[%d].username must not contain ':': the auth is base64(username:password), so the webhook would reject the source Secret and admit every Pod unpatched" $i) }}
{{- end }}
{{- if hasKey $hosts $r.host }}
{{- fail (printf "registries: host %q is listed twice; the dockerconfigjson auths map holds one credential per host" $r.host) }}
{{- end }}
{{- $_ := set $hosts $r.host true }}
{{- end }}
{{- if eq (include "regcred-webhook.sourceSecretName" .) .Values.secretName }}
{{- fail (printf "the source Secret and secretName are both %q: the managed copies need another name than their source" .Values.secretName) }}
{{- end }}
{{- if not .Values.certManager.enabled }}
{{- if not .Values.webhook.caBundle }}
{{- fail "certManager.enabled=false needs webhook.caBundle: the base64-encoded PEM of the CA that signed the serving certificate" }}
{{- end }}
{{- if not .Values.tls.secretName }}
{{- fail "certManager.enabled=false needs tls.secretName: an existing kubernetes.io/tls Secret in the release namespace" }}
{{- end }}
{{- end }}
{{- if and .Values.certManager.enabled .Values.certManager.issuerRef (not (get .Values.certManager.issuerRef "name")) }}
{{- fail "certManager.issuerRef needs a name" }}
{{- end }}
{{- /*
These names go into CEL string literals in the ValidatingAdmissionPolicy:
DNS names hold no quote that could end a literal early.
*/}}
{{- $dnsSubdomain := "^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$" }}
{{- if not (regexMatch $dnsSubdomain (toString .Values.secretName)) }}
{{- fail (printf "secretName %q is not a valid Secret name: lower-case letters, digits, '-' and '.'" (toString .Values.secretName)) }}
{{- end }}
{{- $sa := include "regcred-webhook.serviceAccountName" . }}
{{- if not (regexMatch $dnsSubdomain $sa) }}
{{- fail (printf "serviceAccount.name %q is not a valid ServiceAccount name: lower-case letters, digits, '-' and '.'" $sa) }}
{{- end }}
{{- if not (regexMatch "^[a-z0-9]([-a-z0-9]*[a-z0-9])?$" .Release.Namespace) }}
{{- fail (printf "the release namespace %q is not a valid namespace name" .Release.Namespace) }}
{{- end }}
{{- if lt (int .Values.shutdownDelaySeconds) 0 }}
{{- fail "shutdownDelaySeconds must be 0 (no preStop delay) or more" }}
{{- end }}
{{- if le (int .Values.terminationGracePeriodSeconds) (int .Values.shutdownDelaySeconds) }}
{{- fail (printf "terminationGracePeriodSeconds (%d) must be greater than shutdownDelaySeconds (%d): the preStop delay counts against the grace period, and the webhook needs time left to shut down after it" (int .Values.terminationGracePeriodSeconds) (int .Values.shutdownDelaySeconds)) }}
{{- end }}
{{- end }}
