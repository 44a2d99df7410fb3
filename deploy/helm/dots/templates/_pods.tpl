{{/* What the three workloads share: images, pull secrets, accounts, pod
     labels and annotations, spreading, sidecars. */}}

{{/* dots.imageRef: (dict "image" IMAGE "ctx" $). IMAGE is {registry,
     repository, tag, digest}: [REGISTRY/]REPOSITORY@DIGEST when a digest is
     given, else [REGISTRY/]REPOSITORY:TAG (TAG defaults to the chart's
     appVersion); global.imageRegistry replaces REGISTRY. A string (the
     sidecar images of charts before 0.2.0) is used as it is. */}}
{{- define "dots.imageRef" -}}
{{- $i := .image -}}
{{- if kindIs "string" $i -}}
{{- $i -}}
{{- else -}}
{{- $registry := (.ctx.Values.global).imageRegistry | default $i.registry -}}
{{- $ref := $i.repository -}}
{{- if $registry }}{{ $ref = printf "%s/%s" (trimSuffix "/" $registry) $ref }}{{ end -}}
{{- if $i.digest -}}
{{- printf "%s@%s" $ref $i.digest -}}
{{- else -}}
{{- printf "%s:%s" $ref (toString ($i.tag | default .ctx.Chart.AppVersion)) -}}
{{- end -}}
{{- end -}}
{{- end }}

{{/* dots.componentImage: (dict "ctx" $ "component" "controller"|"node"|
     "server"): the component's image keys over image.*, as a dict. A
     component that names its own repository or tag does not take
     image.digest, which pins image.repository's image. */}}
{{- define "dots.componentImage" -}}
{{- $own := (index .ctx.Values .component).image | default dict -}}
{{- $base := deepCopy .ctx.Values.image -}}
{{- if or $own.repository $own.tag -}}
{{- $_ := set $base "digest" "" -}}
{{- end -}}
{{- toYaml (merge (deepCopy $own) $base) -}}
{{- end }}

{{/* dots.image: the dots image of a component, (dict "ctx" $ "component" X). */}}
{{- define "dots.image" -}}
{{- include "dots.imageRef" (dict "image" (fromYaml (include "dots.componentImage" .)) "ctx" .ctx) -}}
{{- end }}

{{- define "dots.imagePullPolicy" -}}
{{- (fromYaml (include "dots.componentImage" .)).pullPolicy -}}
{{- end }}

{{/* dots.sidecar: the image and resources of a sidecar container,
     (dict "ctx" $ "sidecar" "provisioner"). */}}
{{- define "dots.sidecar" -}}
{{- $sc := index .ctx.Values.sidecars .sidecar -}}
image: {{ include "dots.imageRef" (dict "image" $sc.image "ctx" .ctx) }}
resources:
  {{- toYaml ($sc.resources | default .ctx.Values.sidecars.resources) | nindent 2 }}
{{- end }}

{{/* The pods' imagePullSecrets: global.imagePullSecrets (names or
     {name}) and imagePullSecrets. */}}
{{- define "dots.imagePullSecrets" -}}
{{- $secrets := list -}}
{{- range concat ((.Values.global).imagePullSecrets | default list) (.Values.imagePullSecrets | default list) -}}
{{- $secrets = append $secrets (ternary (dict "name" .) . (kindIs "string" .)) -}}
{{- end -}}
{{- with $secrets }}
imagePullSecrets:
  {{- toYaml . | nindent 2 }}
{{- end -}}
{{- end }}

{{/* dots.serviceAccountName: (dict "ctx" $ "component" X). */}}
{{- define "dots.serviceAccountName" -}}
{{- $sa := .ctx.Values.serviceAccount -}}
{{- $given := dict "controller" $sa.name "node" $sa.nodeName "server" $sa.serverName -}}
{{- index $given .component | default (printf "%s-%s" (include "dots.fullname" .ctx) .component) -}}
{{- end }}

{{/* dots.podMetadata: a pod template's metadata, (dict "ctx" $ "component"
     X "annotations" DICT): the component's podLabels under its selector
     labels (which win), its podAnnotations and those given. */}}
{{- define "dots.podMetadata" -}}
{{- $c := index .ctx.Values .component -}}
{{- $labels := merge (fromYaml (include "dots.selectorLabels" (dict "ctx" .ctx "component" .component))) (deepCopy ($c.podLabels | default dict)) -}}
{{- $annotations := merge (deepCopy (.annotations | default dict)) (deepCopy ($c.podAnnotations | default dict)) -}}
labels:
  {{- toYaml $labels | nindent 2 }}
{{- with $annotations }}
annotations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end }}

{{/* dots.podScheduling: priority class, node selector, tolerations,
     affinity and spreading of a component, (dict "ctx" $ "component" X
     "affinity" DICT): affinity replaces the component's when given.
     Spreading constraints without a labelSelector select the component's
     pods. */}}
{{- define "dots.podScheduling" -}}
{{- $c := index .ctx.Values .component -}}
{{- with $c.priorityClassName }}
priorityClassName: {{ . }}
{{- end }}
{{- with $c.nodeSelector }}
nodeSelector:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with $c.tolerations }}
tolerations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with (.affinity | default $c.affinity) }}
affinity:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- $spread := list -}}
{{- range $c.topologySpreadConstraints -}}
{{- $t := deepCopy . -}}
{{- if not $t.labelSelector -}}
{{- $_ := set $t "labelSelector" (dict "matchLabels" (fromYaml (include "dots.selectorLabels" (dict "ctx" $.ctx "component" $.component)))) -}}
{{- end -}}
{{- $spread = append $spread $t -}}
{{- end -}}
{{- with $spread }}
topologySpreadConstraints:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end }}

{{/* dots.snapshots: "true" when snapshots are on (snapshots.enabled: auto
     follows what the cluster serves), else empty. */}}
{{- define "dots.snapshots" -}}
{{- $v := .Values.snapshots.enabled -}}
{{- if eq (toString $v) "auto" -}}
{{- if or (.Capabilities.APIVersions.Has "snapshot.storage.k8s.io/v1/VolumeSnapshotClass") (.Capabilities.APIVersions.Has "snapshot.storage.k8s.io/v1") }}true{{ end -}}
{{- else if eq (toString $v) "true" -}}true
{{- end -}}
{{- end }}

{{/* "true" when volume attributes are on (volumeAttributes.enabled):
     auto when the cluster serves the VolumeAttributesClass API that
     csi-resizer v1.14 watches, storage.k8s.io/v1beta1 (Kubernetes 1.34
     serves it with --runtime-config=storage.k8s.io/v1beta1=true). */}}
{{- define "dots.volumeAttributes" -}}
{{- $v := .Values.volumeAttributes.enabled -}}
{{- if eq (toString $v) "auto" -}}
{{- if .Capabilities.APIVersions.Has "storage.k8s.io/v1beta1/VolumeAttributesClass" }}true{{ end -}}
{{- else if eq (toString $v) "true" -}}true
{{- end -}}
{{- end }}

{{/* dots.groupSnapshots: the apiVersion of the VolumeGroupSnapshotClass
     when group snapshots are on, else empty. They need snapshots on;
     groupSnapshots.enabled auto follows the newest version of
     groupsnapshot.storage.k8s.io the cluster serves, true takes v1 (GA). */}}
{{- define "dots.groupSnapshots" -}}
{{- if include "dots.snapshots" . -}}
{{- $g := "groupsnapshot.storage.k8s.io" -}}
{{- $api := "" -}}
{{- range list "v1" "v1beta2" "v1beta1" -}}
{{- if and (not $api) (or ($.Capabilities.APIVersions.Has (printf "%s/%s/VolumeGroupSnapshotClass" $g .)) ($.Capabilities.APIVersions.Has (printf "%s/%s" $g .))) -}}
{{- $api = printf "%s/%s" $g . -}}
{{- end -}}
{{- end -}}
{{- $v := toString .Values.groupSnapshots.enabled -}}
{{- if eq $v "auto" -}}{{ $api }}
{{- else if eq $v "true" -}}{{ $api | default (printf "%s/v1" $g) }}
{{- end -}}
{{- end -}}
{{- end }}

{{/* The top-level keys of this chart's values (values.yaml). Others are
     accepted (an umbrella chart's condition key, say) and named in NOTES. */}}
{{- define "dots.topLevelKeys" -}}
{{- list "global" "image" "imagePullSecrets" "fullnameOverride" "logLevel" "kubeletDir" "clusterDomain" "csiDriver" "exports" "tls" "sidecars" "snapshots" "groupSnapshots" "controller" "discovery" "node" "server" "storageClasses" "volumeSnapshotClasses" "volumeGroupSnapshotClasses" "volumeAttributes" "volumeAttributesClasses" "networkPolicy" "metrics" "serviceAccount" | toJson -}}
{{- end }}
