{{/* The CSI driver name is part of every PV: never configurable. */}}
{{- define "dots.driverName" -}}dots.csi.dev{{- end }}

{{- define "dots.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 40 | trimSuffix "-" -}}
{{- else if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 40 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 40 | trimSuffix "-" -}}
{{- end -}}
{{- end }}

{{- define "dots.controllerName" -}}{{ include "dots.fullname" . }}-controller{{- end }}
{{- define "dots.nodeName" -}}{{ include "dots.fullname" . }}-node{{- end }}
{{/* The StatefulSet, its headless Service, and the prefix of every server
     name (dots-server-N), which is part of every volume ID. */}}
{{- define "dots.serverName" -}}{{ include "dots.fullname" . }}-server{{- end }}

{{- define "dots.labels" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{- end }}

{{/* dots.selectorLabels: (dict "ctx" $ "component" "controller") */}}
{{- define "dots.selectorLabels" -}}
app.kubernetes.io/name: {{ .ctx.Chart.Name }}
app.kubernetes.io/instance: {{ .ctx.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end }}

{{/* The server pods' selector as a flag value: k=v,k=v (sorted). */}}
{{- define "dots.serverSelector" -}}
{{- $pairs := list }}
{{- range $k, $v := fromYaml (include "dots.selectorLabels" (dict "ctx" . "component" "server")) }}
{{- $pairs = append $pairs (printf "%s=%s" $k $v) }}
{{- end }}
{{- join "," $pairs }}
{{- end }}
{{- define "dots.componentLabels" -}}
{{ include "dots.labels" .ctx }}
app.kubernetes.io/component: {{ .component }}
{{- end }}

{{/* The SRV record of the servers' API port and the domain of their per-pod
     Services, for the controller's --discover-dns. */}}
{{- define "dots.discoverDNS" -}}
{{- $ns := printf "%s.svc.%s" .Release.Namespace .Values.clusterDomain -}}
srv=_api._tcp.{{ include "dots.serverName" . }}.{{ $ns }},nfs-domain={{ $ns }}
{{- if ne (int .Values.server.nfsPort) 2049 }},nfs-port={{ .Values.server.nfsPort }}{{ end }}
{{- end }}

{{/* Checks that render-time values fit together; schema cannot express these. */}}
{{- define "dots.validate" -}}
{{- $server := include "dots.serverName" . -}}
{{- $longest := printf "%s-%d" $server (sub (int .Values.server.maxReplicas) 1) -}}
{{- if gt (len $longest) 27 -}}
{{- fail (printf "server name %q is longer than 27 characters (it is part of every volume ID): use a shorter release name or set fullnameOverride" $longest) -}}
{{- end -}}
{{- if gt (int .Values.server.replicas) (int .Values.server.maxReplicas) -}}
{{- fail (printf "server.replicas (%d) exceeds server.maxReplicas (%d): raise maxReplicas so every server gets its NFS Service" (int .Values.server.replicas) (int .Values.server.maxReplicas)) -}}
{{- end -}}
{{- if and (eq .Values.server.storage.volumeMode "Filesystem") (not .Values.server.storage.poolFileSize) -}}
{{- fail "server.storage.poolFileSize (e.g. 950Gi) is required with volumeMode Filesystem" -}}
{{- end -}}
{{- if and (eq .Values.discovery.mode "static") (not .Values.discovery.servers) -}}
{{- fail "discovery.mode static needs discovery.servers" -}}
{{- end -}}
{{- $t := .Values.tls -}}
{{- $existing := $t.existingSecrets -}}
{{- if and $t.certManager.enabled (or $existing.server $existing.controller) -}}
{{- fail "tls: choose one of tls.certManager.enabled and tls.existingSecrets, not both" -}}
{{- end -}}
{{- if and (or $existing.server $existing.controller) (not (and $existing.server $existing.controller)) -}}
{{- fail "tls.existingSecrets needs both server and controller (or neither, to let the chart or cert-manager make them)" -}}
{{- end -}}
{{- if and $t.certManager.issuerRef.name (not $t.certManager.enabled) -}}
{{- fail "tls.certManager.issuerRef is used only with tls.certManager.enabled=true" -}}
{{- end -}}
{{- if and (hasKey .Values.csiDriver "attachRequired") (ne .Values.csiDriver.attachRequired .Values.exports.perNode) -}}
{{- fail (printf "csiDriver.attachRequired is deprecated: it follows exports.perNode (now %v). Remove csiDriver.attachRequired; to export every volume to all of server.nfs.clients without an attach step, set exports.perNode=false" .Values.exports.perNode) -}}
{{- end -}}
{{- end }}

{{/* How the mTLS certificates of the servers and the controller are made:
     generated (the chart, default), certManager, or existingSecrets. */}}
{{- define "dots.tlsMode" -}}
{{- if .Values.tls.certManager.enabled -}}certManager
{{- else if or .Values.tls.existingSecrets.server .Values.tls.existingSecrets.controller -}}existingSecrets
{{- else -}}generated
{{- end -}}
{{- end }}

{{/* The identities (DNS names in the certificates) each side checks. Fixed:
     they are the names the binaries default to. */}}
{{- define "dots.serverIdentity" -}}dots-server{{- end }}
{{- define "dots.controllerIdentity" -}}dots-controller{{- end }}

{{/* dots.tlsSecretName: (dict "ctx" $ "component" "server"|"controller"|"ca").
     The CA's Secret exists only in the generated and certManager modes and
     is never mounted. */}}
{{- define "dots.tlsSecretName" -}}
{{- if and (eq (include "dots.tlsMode" .ctx) "existingSecrets") (ne .component "ca") -}}
{{- index .ctx.Values.tls.existingSecrets .component -}}
{{- else -}}
{{- include "dots.fullname" .ctx }}-tls-{{ .component }}
{{- end -}}
{{- end }}

{{/* Where the server and the controller find their certificate, key and CA. */}}
{{- define "dots.tlsDir" -}}/etc/dots/tls{{- end }}

{{- define "dots.tlsArgs" -}}
- --tls-cert-file={{ include "dots.tlsDir" . }}/tls.crt
- --tls-key-file={{ include "dots.tlsDir" . }}/tls.key
- --tls-ca-file={{ include "dots.tlsDir" . }}/ca.crt
{{- end }}

{{/* dots.tlsVolume: (dict "ctx" $ "component" "server"|"controller"). The
     Secret volume is updated in place when the Secret changes, and the
     processes re-read the files: a rotation needs no restart (hence no
     checksum annotation on the pods). A missing key keeps the pod from
     starting instead of starting it without TLS. */}}
{{- define "dots.tlsVolume" -}}
name: tls
secret:
  secretName: {{ include "dots.tlsSecretName" . }}
  # Owner and group only (the controller reads them through its fsGroup).
  defaultMode: 0440
  items:
    - {key: tls.crt, path: tls.crt}
    - {key: tls.key, path: tls.key}
    - {key: ca.crt, path: ca.crt}
{{- end }}

{{/* Container securityContext of everything that needs no privilege. */}}
{{- define "dots.restricted" -}}
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
capabilities: {drop: [ALL]}
{{- end }}

{{/* dots.bytes: a quantity ("1Ti", "1536Gi", "500G", "1099511627776") in
     bytes, to compare quantities written differently. */}}
{{- define "dots.bytes" -}}
{{- $num := regexReplaceAll "^([0-9]+(\\.[0-9]+)?).*$" . "${1}" -}}
{{- $unit := regexReplaceAll "^[0-9]+(\\.[0-9]+)?" . "" -}}
{{- $mult := dict "" 1.0 "k" 1e3 "M" 1e6 "G" 1e9 "T" 1e12 "P" 1e15 "E" 1e18 "Ki" 1024.0 "Mi" 1048576.0 "Gi" 1073741824.0 "Ti" 1099511627776.0 "Pi" 1125899906842624.0 "Ei" 1152921504606846976.0 -}}
{{- if hasKey $mult $unit -}}
{{- printf "%.0f" (mulf (float64 $num) (index $mult $unit)) -}}
{{- else -}}
{{- . -}}
{{- end -}}
{{- end }}
