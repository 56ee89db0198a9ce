{{/*
Names and labels.
*/}}
{{- define "tocsin.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "tocsin.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{- define "tocsin.selectorLabels" -}}
app.kubernetes.io/name: {{ include "tocsin.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "tocsin.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{ include "tocsin.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/component: alert-router
app.kubernetes.io/part-of: tocsin
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end -}}

{{- define "tocsin.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "tocsin.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{- define "tocsin.image" -}}
{{- $tag := toString (default .Chart.AppVersion .Values.image.tag) -}}
{{- if .Values.image.digest -}}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest -}}
{{- else -}}
{{- printf "%s:%s" .Values.image.repository $tag -}}
{{- end -}}
{{- end -}}

{{- define "tocsin.pvcName" -}}
{{- default (printf "%s-data" (include "tocsin.fullname" .)) .Values.persistence.existingClaim -}}
{{- end -}}

{{/*
Checks that fail rendering with a message that says what to change. Included by the Deployment,
so `helm template`, `helm lint` and `helm install` all stop on them.
*/}}
{{- define "tocsin.validate" -}}
{{- $sqlite := eq .Values.store.backend "sqlite" -}}
{{- if and $sqlite (gt (int .Values.replicaCount) 1) -}}
{{- fail (printf "replicaCount is %d but store.backend is sqlite, which is single-replica (one process owns the database file). Set replicaCount: 1, or use store.backend: postgres with secrets.postgresDsn for several replicas." (int .Values.replicaCount)) -}}
{{- end -}}
{{- if and $sqlite (eq .Values.strategy.type "RollingUpdate") -}}
{{- fail "strategy.type is RollingUpdate but store.backend is sqlite: a rollout would run two processes on one database file. Use strategy.type: Recreate (or leave it empty)." -}}
{{- end -}}
{{- if not (include "tocsin.secretName" (list . .Values.secrets.receiverToken)) -}}
{{- fail "secrets.existingSecret (or secrets.receiverToken.secretName) is required: the Secret holding Alertmanager's bearer token. Create it first, e.g. kubectl create secret generic tocsin --from-literal=receiver-token=$(openssl rand -hex 32)" -}}
{{- end -}}
{{- if and (not $sqlite) (not (include "tocsin.secretName" (list . .Values.secrets.postgresDsn))) -}}
{{- fail "store.backend is postgres: set secrets.existingSecret (or secrets.postgresDsn.secretName) to the Secret holding the DSN under the key secrets.postgresDsn.key." -}}
{{- end -}}
{{- $pd := dig "adapters" "pagerduty" dict (.Values.config | default dict) -}}
{{- range $k := list "services" "api_token" "webhook_secrets" -}}
{{- if hasKey $pd $k -}}
{{- fail (printf "config.adapters.pagerduty.%s holds secrets; reference them with secrets.pagerduty instead (routingKeys, apiToken, webhookSecrets) so no key is written into the chart's values." $k) -}}
{{- end -}}
{{- end -}}
{{- $slack := dig "adapters" "slack" dict (.Values.config | default dict) -}}
{{- range $k := list "bot_token" "signing_secret" -}}
{{- if hasKey $slack $k -}}
{{- fail (printf "config.adapters.slack.%s is a secret; reference it with secrets.slack instead (botToken, signingSecret) so no secret is written into the chart's values." $k) -}}
{{- end -}}
{{- end -}}
{{- range $section, $keys := dict "ntfy" (list "access_token" "link_secret" "access_token_file" "link_secret_file") "pushover" (list "token" "callback_secret" "token_file" "callback_secret_file") -}}
{{- $given := dig "adapters" $section dict ($.Values.config | default dict) -}}
{{- range $k := $keys -}}
{{- if hasKey $given $k -}}
{{- fail (printf "config.adapters.%s.%s is a secret; reference it with secrets.%s instead so no secret is written into the chart's values." $section $k $section) -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- $phone := dig "adapters" "phone" dict (.Values.config | default dict) -}}
{{- range $where, $given := dict "phone" $phone "phone.gateway" ($phone.gateway | default dict) "phone.gateway.inbound" (dig "gateway" "inbound" dict $phone) "phone.vonage" ($phone.vonage | default dict) -}}
{{- range $k := list "auth_token" "token" "secret" "private_key" "signature_secret" -}}
{{- if or (hasKey $given $k) (hasKey $given (printf "%s_file" $k)) -}}
{{- fail (printf "config.adapters.%s.%s is a secret; reference it with secrets.phone instead (twilioAuthToken, vonagePrivateKey, vonageSignatureSecret, gatewayToken, gatewayInboundSecret) so no secret is written into the chart's values." $where $k) -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- $ph := .Values.secrets.phone -}}
{{- if ne (empty $ph.vonagePrivateKey.key) (empty $ph.vonageSignatureSecret.key) -}}
{{- fail "secrets.phone needs both vonagePrivateKey and vonageSignatureSecret (Vonage's API takes JWTs signed with the one, its webhooks are signed with the other)." -}}
{{- end -}}
{{- if and .Values.secrets.ntfy.accessToken.key (not .Values.secrets.ntfy.linkSecret.key) -}}
{{- fail "secrets.ntfy.accessToken needs secrets.ntfy.linkSecret too (it signs the notifications' Acknowledge buttons)." -}}
{{- end -}}
{{- $po := .Values.secrets.pushover -}}
{{- if ne (empty $po.token.key) (empty $po.callbackSecret.key) -}}
{{- fail "secrets.pushover needs both token and callbackSecret (Pushover's acknowledgement callback URL is signed)." -}}
{{- end -}}
{{- $sl := .Values.secrets.slack -}}
{{- if ne (empty $sl.botToken.key) (empty $sl.signingSecret.key) -}}
{{- fail "secrets.slack needs both botToken and signingSecret (a Slack app signs what it sends with the one and is called with the other)." -}}
{{- end -}}
{{- $seen := dict -}}
{{- range $svc, $_ := .Values.secrets.pagerduty.routingKeys -}}
{{- $env := include "tocsin.envSuffix" $svc -}}
{{- if hasKey $seen $env -}}
{{- fail (printf "secrets.pagerduty.routingKeys: services %q and %q both map to the variable TOCSIN_PAGERDUTY_ROUTING_KEY_%s; rename one." (get $seen $env) $svc $env) -}}
{{- end -}}
{{- $_ := set $seen $env $svc -}}
{{- end -}}
{{- $reserved := list "TOCSIN_RECEIVER_TOKEN" "TOCSIN_API_TOKEN" "TOCSIN_POSTGRES_DSN" "TOCSIN_PAGERDUTY_API_TOKEN" -}}
{{- range .Values.secrets.extraEnv -}}
{{- if or (has .name $reserved) (hasPrefix "TOCSIN_RECEIVER_TOKEN_" .name) (hasPrefix "TOCSIN_PAGERDUTY_" .name) (hasPrefix "TOCSIN_SLACK_" .name) (hasPrefix "TOCSIN_NTFY_" .name) (hasPrefix "TOCSIN_PUSHOVER_" .name) (hasPrefix "TOCSIN_TWILIO_" .name) (hasPrefix "TOCSIN_VONAGE_" .name) (hasPrefix "TOCSIN_SMS_GATEWAY_" .name) -}}
{{- fail (printf "secrets.extraEnv: %s is set by the chart itself; pick another name." .name) -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/*
The Secret name a reference points at: its own secretName, else secrets.existingSecret.
Usage: include "tocsin.secretName" (list $ $ref)
*/}}
{{- define "tocsin.secretName" -}}
{{- $root := index . 0 -}}
{{- $ref := index . 1 -}}
{{- default $root.Values.secrets.existingSecret $ref.secretName -}}
{{- end -}}

{{/* A PagerDuty service name as an environment variable suffix: payments-api -> PAYMENTS_API. */}}
{{- define "tocsin.envSuffix" -}}
{{- regexReplaceAll "[^A-Z0-9_]" (upper .) "_" -}}
{{- end -}}

{{/*
One env entry read from a Secret. Usage: include "tocsin.secretEnv" (list $ "NAME" $ref)
*/}}
{{- define "tocsin.secretEnv" -}}
{{- $root := index . 0 -}}
{{- $ref := index . 2 -}}
- name: {{ index . 1 }}
  valueFrom:
    secretKeyRef:
      name: {{ include "tocsin.secretName" (list $root $ref) | required (printf "secrets.existingSecret (or a secretName) is required for the key %q" $ref.key) }}
      key: {{ $ref.key | quote }}
{{- end -}}

{{/* Every environment variable of the tocsin container: Secret references only. */}}
{{- define "tocsin.env" -}}
{{- $s := .Values.secrets -}}
{{ include "tocsin.secretEnv" (list . "TOCSIN_RECEIVER_TOKEN" $s.receiverToken) }}
{{- range $i, $ref := $s.extraReceiverTokens }}
{{ include "tocsin.secretEnv" (list $ (printf "TOCSIN_RECEIVER_TOKEN_%d" (add1 $i)) $ref) }}
{{- end }}
{{- if $s.apiToken.key }}
{{ include "tocsin.secretEnv" (list . "TOCSIN_API_TOKEN" $s.apiToken) }}
{{- end }}
{{- if eq .Values.store.backend "postgres" }}
{{ include "tocsin.secretEnv" (list . "TOCSIN_POSTGRES_DSN" $s.postgresDsn) }}
{{- end }}
{{- range $svc, $ref := $s.pagerduty.routingKeys }}
{{ include "tocsin.secretEnv" (list $ (printf "TOCSIN_PAGERDUTY_ROUTING_KEY_%s" (include "tocsin.envSuffix" $svc)) $ref) }}
{{- end }}
{{- if $s.pagerduty.apiToken.key }}
{{ include "tocsin.secretEnv" (list . "TOCSIN_PAGERDUTY_API_TOKEN" $s.pagerduty.apiToken) }}
{{- end }}
{{- range $i, $ref := $s.pagerduty.webhookSecrets }}
{{ include "tocsin.secretEnv" (list $ (printf "TOCSIN_PAGERDUTY_WEBHOOK_SECRET_%d" $i) $ref) }}
{{- end }}
{{- if $s.slack.botToken.key }}
{{ include "tocsin.secretEnv" (list . "TOCSIN_SLACK_BOT_TOKEN" $s.slack.botToken) }}
{{ include "tocsin.secretEnv" (list . "TOCSIN_SLACK_SIGNING_SECRET" $s.slack.signingSecret) }}
{{- end }}
{{- if $s.ntfy.linkSecret.key }}
{{ include "tocsin.secretEnv" (list . "TOCSIN_NTFY_LINK_SECRET" $s.ntfy.linkSecret) }}
{{- end }}
{{- if $s.ntfy.accessToken.key }}
{{ include "tocsin.secretEnv" (list . "TOCSIN_NTFY_ACCESS_TOKEN" $s.ntfy.accessToken) }}
{{- end }}
{{- if $s.pushover.token.key }}
{{ include "tocsin.secretEnv" (list . "TOCSIN_PUSHOVER_TOKEN" $s.pushover.token) }}
{{ include "tocsin.secretEnv" (list . "TOCSIN_PUSHOVER_CALLBACK_SECRET" $s.pushover.callbackSecret) }}
{{- end }}
{{- range $env, $ref := dict "TOCSIN_TWILIO_AUTH_TOKEN" $s.phone.twilioAuthToken "TOCSIN_VONAGE_PRIVATE_KEY" $s.phone.vonagePrivateKey "TOCSIN_VONAGE_SIGNATURE_SECRET" $s.phone.vonageSignatureSecret "TOCSIN_SMS_GATEWAY_TOKEN" $s.phone.gatewayToken "TOCSIN_SMS_GATEWAY_INBOUND_SECRET" $s.phone.gatewayInboundSecret }}
{{- if $ref.key }}
{{ include "tocsin.secretEnv" (list $ $env $ref) }}
{{- end }}
{{- end }}
{{- range $s.extraEnv }}
{{ include "tocsin.secretEnv" (list $ .name .) }}
{{- end }}
{{- end -}}

{{/* The URL people and PagerDuty use to reach tocsin (server.public_url). */}}
{{- define "tocsin.publicUrl" -}}
{{- if .Values.server.publicUrl -}}
{{- .Values.server.publicUrl -}}
{{- else if and .Values.ingress.enabled .Values.ingress.hosts -}}
{{- $host := first .Values.ingress.hosts -}}
{{- $tls := false -}}
{{- range .Values.ingress.tls -}}{{- if has $host (.hosts | default list) -}}{{- $tls = true -}}{{- end -}}{{- end -}}
{{- printf "%s://%s" (ternary "https" "http" $tls) $host -}}
{{- else -}}
{{- printf "http://%s.%s.svc:%d" (include "tocsin.fullname" .) .Release.Namespace (int .Values.service.port) -}}
{{- end -}}
{{- end -}}

{{/*
tocsin.yaml: `config:` as given, plus the sections the chart owns (server, auth, store) and the
Secret-backed PagerDuty fields, all pointing at environment variables (never at values).
*/}}
{{- define "tocsin.configYaml" -}}
{{- $v := .Values -}}
{{- $cfg := deepCopy ($v.config | default dict) -}}
{{- $server := dict
      "listen" (printf "%s:%d" $v.server.bindAddress (int $v.service.port))
      "public_url" (include "tocsin.publicUrl" .)
      "max_body_bytes" (int64 $v.server.maxBodyBytes)
      "log_level" $v.server.logLevel
      "log_format" $v.server.logFormat -}}
{{- $_ := set $cfg "server" $server -}}
{{- $tokens := list "${TOCSIN_RECEIVER_TOKEN}" -}}
{{- range $i, $_ := $v.secrets.extraReceiverTokens -}}
{{- $tokens = append $tokens (printf "${TOCSIN_RECEIVER_TOKEN_%d}" (add1 $i)) -}}
{{- end -}}
{{- $auth := dict "receiver" (dict "bearer_tokens" $tokens) -}}
{{- if $v.secrets.apiToken.key -}}
{{- $_ := set $auth "api_tokens" (list (dict "name" $v.secrets.apiToken.name "token" "${TOCSIN_API_TOKEN}" "scope" $v.secrets.apiToken.scope)) -}}
{{- end -}}
{{- $_ := set $cfg "auth" $auth -}}
{{- if eq $v.store.backend "postgres" -}}
{{- $store := dict "backend" "postgres" "dsn" "${TOCSIN_POSTGRES_DSN}" "pool_min" (int $v.store.postgres.poolMin) "pool_max" (int $v.store.postgres.poolMax) -}}
{{- if $v.store.postgres.schema -}}{{- $_ := set $store "schema" $v.store.postgres.schema -}}{{- end -}}
{{- $_ := set $cfg "store" $store -}}
{{- else -}}
{{- $_ := set $cfg "store" (dict "backend" "sqlite" "path" $v.store.sqlite.path) -}}
{{- end -}}
{{- if $v.ruleFiles -}}
{{- $rules := $cfg.rules | default dict -}}
{{- if not $rules.files -}}{{- $_ := set $rules "files" (list "rules/*.yaml") -}}{{- end -}}
{{- $_ := set $cfg "rules" $rules -}}
{{- end -}}
{{- $pd := $v.secrets.pagerduty -}}
{{- if or $pd.routingKeys $pd.apiToken.key $pd.webhookSecrets -}}
{{- $adapters := $cfg.adapters | default dict -}}
{{- $pdc := $adapters.pagerduty | default dict -}}
{{- if $pd.routingKeys -}}
{{- $services := dict -}}
{{- range $svc, $_ := $pd.routingKeys -}}
{{- $_ := set $services $svc (printf "${TOCSIN_PAGERDUTY_ROUTING_KEY_%s}" (include "tocsin.envSuffix" $svc)) -}}
{{- end -}}
{{- $_ := set $pdc "services" $services -}}
{{- end -}}
{{- if $pd.apiToken.key -}}{{- $_ := set $pdc "api_token" "${TOCSIN_PAGERDUTY_API_TOKEN}" -}}{{- end -}}
{{- if $pd.webhookSecrets -}}
{{- $ws := list -}}
{{- range $i, $_ := $pd.webhookSecrets -}}{{- $ws = append $ws (printf "${TOCSIN_PAGERDUTY_WEBHOOK_SECRET_%d}" $i) -}}{{- end -}}
{{- $_ := set $pdc "webhook_secrets" $ws -}}
{{- end -}}
{{- $_ := set $adapters "pagerduty" $pdc -}}
{{- $_ := set $cfg "adapters" $adapters -}}
{{- end -}}
{{- if $v.secrets.slack.botToken.key -}}
{{- $adapters := $cfg.adapters | default dict -}}
{{- $slc := deepCopy ($adapters.slack | default dict) -}}
{{- $_ := set $slc "bot_token" "${TOCSIN_SLACK_BOT_TOKEN}" -}}
{{- $_ := set $slc "signing_secret" "${TOCSIN_SLACK_SIGNING_SECRET}" -}}
{{- $_ := set $adapters "slack" $slc -}}
{{- $_ := set $cfg "adapters" $adapters -}}
{{- end -}}
{{- if $v.secrets.ntfy.linkSecret.key -}}
{{- $adapters := $cfg.adapters | default dict -}}
{{- $nt := deepCopy ($adapters.ntfy | default dict) -}}
{{- $_ := set $nt "link_secret" "${TOCSIN_NTFY_LINK_SECRET}" -}}
{{- if $v.secrets.ntfy.accessToken.key -}}{{- $_ := set $nt "access_token" "${TOCSIN_NTFY_ACCESS_TOKEN}" -}}{{- end -}}
{{- $_ := set $adapters "ntfy" $nt -}}
{{- $_ := set $cfg "adapters" $adapters -}}
{{- end -}}
{{- if $v.secrets.pushover.token.key -}}
{{- $adapters := $cfg.adapters | default dict -}}
{{- $po := deepCopy ($adapters.pushover | default dict) -}}
{{- $_ := set $po "token" "${TOCSIN_PUSHOVER_TOKEN}" -}}
{{- $_ := set $po "callback_secret" "${TOCSIN_PUSHOVER_CALLBACK_SECRET}" -}}
{{- $_ := set $adapters "pushover" $po -}}
{{- $_ := set $cfg "adapters" $adapters -}}
{{- end -}}
{{- $ph := $v.secrets.phone -}}
{{- if or $ph.twilioAuthToken.key $ph.vonagePrivateKey.key $ph.gatewayToken.key $ph.gatewayInboundSecret.key -}}
{{- $adapters := $cfg.adapters | default dict -}}
{{- $pc := deepCopy ($adapters.phone | default dict) -}}
{{- if $ph.twilioAuthToken.key -}}{{- $_ := set $pc "auth_token" "${TOCSIN_TWILIO_AUTH_TOKEN}" -}}{{- end -}}
{{- if $ph.vonagePrivateKey.key -}}
{{- $vc := $pc.vonage | default dict -}}
{{- $_ := set $vc "private_key" "${TOCSIN_VONAGE_PRIVATE_KEY}" -}}
{{- $_ := set $vc "signature_secret" "${TOCSIN_VONAGE_SIGNATURE_SECRET}" -}}
{{- $_ := set $pc "vonage" $vc -}}
{{- end -}}
{{- if or $ph.gatewayToken.key $ph.gatewayInboundSecret.key -}}
{{- $gc := $pc.gateway | default dict -}}
{{- if $ph.gatewayToken.key -}}{{- $_ := set $gc "token" "${TOCSIN_SMS_GATEWAY_TOKEN}" -}}{{- end -}}
{{- if $ph.gatewayInboundSecret.key -}}
{{- $ic := $gc.inbound | default dict -}}
{{- $_ := set $ic "secret" "${TOCSIN_SMS_GATEWAY_INBOUND_SECRET}" -}}
{{- $_ := set $gc "inbound" $ic -}}
{{- end -}}
{{- $_ := set $pc "gateway" $gc -}}
{{- end -}}
{{- $_ := set $adapters "phone" $pc -}}
{{- $_ := set $cfg "adapters" $adapters -}}
{{- end -}}
{{- toYaml $cfg -}}
{{- end -}}
