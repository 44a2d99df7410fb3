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

{{- define "dots.componentLabels" -}}
{{ include "dots.labels" .ctx }}
app.kubernetes.io/component: {{ .component }}
{{- end }}

{{- define "dots.image" -}}
{{ .Values.image.repository }}:{{ .Values.image.tag | default .Chart.AppVersion }}
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
{{- end }}

{{/* Container securityContext of everything that needs no privilege. */}}
{{- define "dots.restricted" -}}
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
capabilities: {drop: [ALL]}
{{- end }}
