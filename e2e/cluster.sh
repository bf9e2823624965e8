#!/usr/bin/env bash
# A real local Kubernetes control plane with simulated GPU nodes, built from source, on 127.0.0.1 only.
#
#   e2e/cluster.sh build   build (or reuse from cache) kube-apiserver, kube-controller-manager, kube-scheduler,
#                          kubectl (Kubernetes v1.36), etcd (3.6), kwok (0.8), helm (3), prometheus (3.16, with Kubernetes
#                          discovery); prints where they are
#   e2e/cluster.sh up      start etcd, kube-apiserver, kube-controller-manager, kube-scheduler and kwok, then
#                          create the GPU nodes of e2e/topology.yaml (or $GREENMODEL_TOPOLOGY); idempotent
#   e2e/cluster.sh env     print export lines: eval "$(e2e/cluster.sh env)"
#   e2e/cluster.sh down    stop every process `up` started and remove the cluster's state
#   e2e/cluster.sh stop C...   stop components (e.g. kube-apiserver) and keep the state (fault tests)
#   e2e/cluster.sh start C...  start stopped components again and wait until each is healthy
#
# Environment: GREENMODEL_CLUSTER_DIR (state, default /tmp/greenmodel-cluster), GREENMODEL_TOPOLOGY (fleet file),
# GREENMODEL_NO_BUILD=1 (up fails instead of building when binaries are missing), GM_CACHE (build cache,
# default ${XDG_CACHE_HOME:-~/.cache}/greenmodel), GM_*_VERSION (see e2e/lib/build.sh), GM_PORT_* and the
# controllers' client limits GM_KCM_* / GM_SCHEDULER_* (below).
# Docs: docs/local-cluster.md
set -euo pipefail

E2E_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO_DIR=$(cd "$E2E_DIR/.." && pwd)
# shellcheck source=lib/build.sh
source "$E2E_DIR/lib/build.sh"

STATE=${GREENMODEL_CLUSTER_DIR:-/tmp/greenmodel-cluster}
TOPOLOGY=${GREENMODEL_TOPOLOGY:-$E2E_DIR/topology.yaml}
: "${GM_PORT_ETCD:=23790}" "${GM_PORT_ETCD_PEER:=23800}" "${GM_PORT_APISERVER:=16443}"
: "${GM_PORT_KCM:=10257}" "${GM_PORT_SCHEDULER:=10259}" "${GM_PORT_KWOK:=10247}"
: "${GM_UP_TIMEOUT:=90}"
# Client rate limits and concurrency of the controllers. The components' defaults (controller-manager 20 QPS,
# burst 30, 5 concurrent Deployment and ReplicaSet syncs; scheduler 50 QPS, burst 100) make a burst of 1,000
# Deployments wait minutes in the controller-manager's own rate limiter (docs/scale.md measures it); clusters
# that run thousands of workloads raise them, and this test cluster does too. Empty: the component's default.
: "${GM_KCM_API_QPS=100}" "${GM_KCM_API_BURST=200}" "${GM_KCM_CONCURRENT_SYNCS=20}"
: "${GM_SCHEDULER_API_QPS=100}" "${GM_SCHEDULER_API_BURST=200}" "${GM_KWOK_POD_WORKERS:=16}"
HOST=127.0.0.1

K8S_BIN=$(gm_dir kubernetes "$GM_K8S_VERSION")/bin
ETCD_BIN=$(gm_dir etcd "$GM_ETCD_VERSION")/bin
KWOK_DIR=$(gm_dir kwok "$GM_KWOK_VERSION")
HELM_BIN=$(gm_dir helm "$GM_HELM_VERSION")/bin
KUBECTL="$K8S_BIN/kubectl"
ADMIN_KUBECONFIG="$STATE/admin.kubeconfig"

T0=$(date +%s)
say() { printf '[cluster %3ds] %s\n' "$(( $(date +%s) - T0 ))" "$*" >&2; }
die() { say "ERROR: $*"; exit 1; }

python_bin() { # the repo venv if it exists (has PyYAML), else the system python3
  if [[ -x $REPO_DIR/.venv/bin/python ]]; then echo "$REPO_DIR/.venv/bin/python"; else command -v python3; fi
}

all_built() {
  local d
  for d in "$K8S_BIN" "$ETCD_BIN" "$KWOK_DIR/bin" "$HELM_BIN"; do [[ -f $d/.ok ]] || return 1; done
}

# ---------------------------------------------------------------------------------------------- PKI
# A private CA; server cert for kube-apiserver; client certs (CN = user, O = group) for each client; the
# ServiceAccount token signing key pair. All ECDSA P-256 except the SA key (RSA 2048, RS256 tokens).
pki_cert() { # name CN [O] [server-SANs]
  local name=$1 cn=$2 org=${3:-} sans=${4:-} subj ext
  subj="/CN=$cn"; [[ -n $org ]] && subj="/O=$org$subj"
  openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -keyout "$STATE/pki/$name.key" \
    -subj "$subj" -out "$STATE/pki/$name.csr" 2>/dev/null
  ext="$STATE/pki/$name.ext"
  if [[ -n $sans ]]; then
    printf 'basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\nsubjectAltName=%s\n' "$sans" >"$ext"
  else
    printf 'basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature,keyEncipherment\nextendedKeyUsage=clientAuth\n' >"$ext"
  fi
  openssl x509 -req -in "$STATE/pki/$name.csr" -CA "$STATE/pki/ca.crt" -CAkey "$STATE/pki/ca.key" \
    -CAcreateserial -days 3650 -sha256 -extfile "$ext" -out "$STATE/pki/$name.crt" 2>/dev/null
  rm -f "$STATE/pki/$name.csr" "$ext"
}

kubeconfig() { # file cert-name
  local file=$1 name=$2
  cat >"$file" <<EOF
apiVersion: v1
kind: Config
clusters:
- name: greenmodel-local
  cluster:
    server: https://$HOST:$GM_PORT_APISERVER
    certificate-authority-data: $(base64 -w0 <"$STATE/pki/ca.crt")
users:
- name: $name
  user:
    client-certificate-data: $(base64 -w0 <"$STATE/pki/$name.crt")
    client-key-data: $(base64 -w0 <"$STATE/pki/$name.key")
contexts:
- name: greenmodel-local
  context: {cluster: greenmodel-local, user: $name}
current-context: greenmodel-local
EOF
  chmod 600 "$file"
}

ensure_pki() {
  [[ -f $STATE/pki/.ok ]] && return 0
  command -v openssl >/dev/null || die "openssl is needed to create the cluster's certificates (apt-get install openssl)"
  say "pki: creating CA, serving and client certificates, ServiceAccount signing key in $STATE/pki"
  rm -rf "$STATE/pki"; mkdir -p "$STATE/pki"; chmod 700 "$STATE/pki"
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 3650 -sha256 \
    -subj "/CN=greenmodel-local-ca" -keyout "$STATE/pki/ca.key" -out "$STATE/pki/ca.crt" \
    -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign,digitalSignature" 2>/dev/null
  pki_cert apiserver kube-apiserver "" \
    "IP:127.0.0.1,IP:10.96.0.1,DNS:localhost,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local"
  pki_cert admin greenmodel-admin system:masters                  # cluster-admin via the system:masters group
  pki_cert kube-controller-manager system:kube-controller-manager  # bound by the default RBAC bootstrap policy
  pki_cert kube-scheduler system:kube-scheduler                    # idem
  pki_cert kwok kwok-controller system:masters  # kwok writes node/pod status, leases and events of every node
  openssl genrsa -out "$STATE/pki/sa.key" 2048 2>/dev/null
  openssl rsa -in "$STATE/pki/sa.key" -pubout -out "$STATE/pki/sa.pub" 2>/dev/null
  kubeconfig "$ADMIN_KUBECONFIG" admin
  kubeconfig "$STATE/kube-controller-manager.kubeconfig" kube-controller-manager
  kubeconfig "$STATE/kube-scheduler.kubeconfig" kube-scheduler
  kubeconfig "$STATE/kwok.kubeconfig" kwok
  touch "$STATE/pki/.ok"
}

# ---------------------------------------------------------------------------------------------- processes
pid_of() { # component -> pid if it is running (and really is that binary), else nothing
  local f="$STATE/pids/$1.pid" pid
  [[ -f $f ]] || return 0
  pid=$(<"$f")
  if [[ -n $pid && -r /proc/$pid/cmdline ]] && tr '\0' ' ' <"/proc/$pid/cmdline" | grep -q -- "/$1 "; then
    echo "$pid"
  fi
}

cmdline_of() { # component -> argv (one per line)
  local p=$STATE/pki
  case $1 in
    etcd) printf '%s\n' "$ETCD_BIN/etcd" --name=greenmodel --data-dir="$STATE/etcd" \
        --listen-client-urls="http://$HOST:$GM_PORT_ETCD" --advertise-client-urls="http://$HOST:$GM_PORT_ETCD" \
        --listen-peer-urls="http://$HOST:$GM_PORT_ETCD_PEER" --initial-advertise-peer-urls="http://$HOST:$GM_PORT_ETCD_PEER" \
        --initial-cluster="greenmodel=http://$HOST:$GM_PORT_ETCD_PEER" --unsafe-no-fsync \
        --log-level=warn --quota-backend-bytes=4294967296 ;;
    kube-apiserver) printf '%s\n' "$K8S_BIN/kube-apiserver" \
        --bind-address=$HOST --advertise-address=$HOST --secure-port="$GM_PORT_APISERVER" \
        --endpoint-reconciler-type=none --etcd-servers="http://$HOST:$GM_PORT_ETCD" \
        --tls-cert-file="$p/apiserver.crt" --tls-private-key-file="$p/apiserver.key" --client-ca-file="$p/ca.crt" \
        --authorization-mode=Node,RBAC --enable-admission-plugins=NodeRestriction \
        --service-account-issuer=https://kubernetes.default.svc.cluster.local \
        --service-account-key-file="$p/sa.pub" --service-account-signing-key-file="$p/sa.key" \
        --service-cluster-ip-range=10.96.0.0/16 --allow-privileged=true --profiling=false \
        --requestheader-client-ca-file="$p/ca.crt" --requestheader-allowed-names=front-proxy-client \
        --requestheader-username-headers=X-Remote-User --requestheader-group-headers=X-Remote-Group \
        --requestheader-extra-headers-prefix=X-Remote-Extra- \
        --cert-dir="$STATE/apiserver-certs" ;;
    kube-controller-manager) printf '%s\n' "$K8S_BIN/kube-controller-manager" \
        --bind-address=$HOST --secure-port="$GM_PORT_KCM" --kubeconfig="$STATE/kube-controller-manager.kubeconfig" \
        --authentication-kubeconfig="$STATE/kube-controller-manager.kubeconfig" \
        --authorization-kubeconfig="$STATE/kube-controller-manager.kubeconfig" \
        --service-account-private-key-file="$p/sa.key" --root-ca-file="$p/ca.crt" --use-service-account-credentials=true \
        --cluster-signing-cert-file="$p/ca.crt" --cluster-signing-key-file="$p/ca.key" \
        --leader-elect=false --controllers='*,-nodeipam,-cloud-node-lifecycle' --profiling=false \
        ${GM_KCM_API_QPS:+--kube-api-qps="$GM_KCM_API_QPS"} ${GM_KCM_API_BURST:+--kube-api-burst="$GM_KCM_API_BURST"} \
        ${GM_KCM_CONCURRENT_SYNCS:+--concurrent-deployment-syncs="$GM_KCM_CONCURRENT_SYNCS"} \
        ${GM_KCM_CONCURRENT_SYNCS:+--concurrent-replicaset-syncs="$GM_KCM_CONCURRENT_SYNCS"} \
        --cert-dir="$STATE/kcm-certs" ;;
    kube-scheduler) printf '%s\n' "$K8S_BIN/kube-scheduler" \
        --bind-address=$HOST --secure-port="$GM_PORT_SCHEDULER" --kubeconfig="$STATE/kube-scheduler.kubeconfig" \
        --authentication-kubeconfig="$STATE/kube-scheduler.kubeconfig" \
        --authorization-kubeconfig="$STATE/kube-scheduler.kubeconfig" --leader-elect=false --profiling=false \
        ${GM_SCHEDULER_API_QPS:+--kube-api-qps="$GM_SCHEDULER_API_QPS"} \
        ${GM_SCHEDULER_API_BURST:+--kube-api-burst="$GM_SCHEDULER_API_BURST"} ;;
    kwok) printf '%s\n' "$KWOK_DIR/bin/kwok" --kubeconfig="$STATE/kwok.kubeconfig" --config="$STATE/kwok.yaml" \
        --manage-all-nodes=false --manage-nodes-with-annotation-selector=kwok.x-k8s.io/node=fake \
        --node-ip=$HOST --node-lease-duration-seconds=40 --server-address="$HOST:$GM_PORT_KWOK" ;;
  esac
}

health_url() {
  case $1 in
    etcd) echo "http://$HOST:$GM_PORT_ETCD/health" ;;
    kube-apiserver) echo "https://$HOST:$GM_PORT_APISERVER/readyz" ;;
    kube-controller-manager) echo "https://$HOST:$GM_PORT_KCM/healthz" ;;
    kube-scheduler) echo "https://$HOST:$GM_PORT_SCHEDULER/healthz" ;;
    kwok) echo "http://$HOST:$GM_PORT_KWOK/healthz" ;;
  esac
}

port_of() {
  case $1 in
    etcd) echo "$GM_PORT_ETCD" ;; kube-apiserver) echo "$GM_PORT_APISERVER" ;;
    kube-controller-manager) echo "$GM_PORT_KCM" ;; kube-scheduler) echo "$GM_PORT_SCHEDULER" ;; kwok) echo "$GM_PORT_KWOK" ;;
  esac
}

healthy() {
  local p=$STATE/pki
  curl -fsS --max-time 3 --cacert "$p/ca.crt" --cert "$p/admin.crt" --key "$p/admin.key" \
    $([[ $1 == kube-controller-manager || $1 == kube-scheduler ]] && echo -k) "$(health_url "$1")" >/dev/null 2>&1
}

log_tail() { # component: last lines of its log, for error messages
  echo "---- last 40 lines of $STATE/logs/$1.log ----" >&2
  tail -n 40 "$STATE/logs/$1.log" >&2 2>/dev/null || echo "(no log)" >&2
  echo "----" >&2
}

start() { # component: start it if it is not running
  local c=$1 pid
  pid=$(pid_of "$c")
  if [[ -n $pid ]]; then say "$c: running (pid $pid)"; return 0; fi
  if ss -Hltn "sport = :$(port_of "$c")" 2>/dev/null | grep -q .; then
    die "$c: port $HOST:$(port_of "$c") is taken by another process (not started by this script); free it or set GM_PORT_*"
  fi
  local -a argv; mapfile -t argv < <(cmdline_of "$c")
  mkdir -p "$STATE/logs" "$STATE/pids"
  printf '==== %s start %s\n' "$(date -u +%FT%TZ)" "${argv[*]}" >>"$STATE/logs/$c.log"
  # setsid: own session, so the terminal's Ctrl-C and pytest's process group do not take it down.
  # 9>&-: the child must not inherit the lock fd, or it would hold the lock for its whole life.
  setsid "${argv[@]}" >>"$STATE/logs/$c.log" 2>&1 </dev/null 9>&- &
  echo $! >"$STATE/pids/$c.pid"
  say "$c: started (pid $!), log $STATE/logs/$c.log"
}

wait_healthy() { # component
  local c=$1 deadline=$(( $(date +%s) + GM_UP_TIMEOUT ))
  until healthy "$c"; do
    if [[ -z $(pid_of "$c") ]]; then say "$c: exited before becoming healthy"; log_tail "$c"; exit 1; fi
    if (( $(date +%s) > deadline )); then
      say "$c: not healthy after ${GM_UP_TIMEOUT}s ($(health_url "$c"))"; log_tail "$c"; exit 1
    fi
    sleep 0.5
  done
  say "$c: healthy"
}

stop() { # components...: TERM them together, wait up to 10 s, then KILL what is left
  local c pid i pids=() names=()
  for c in "$@"; do
    pid=$(pid_of "$c")
    if [[ -n $pid ]]; then kill -TERM "$pid" 2>/dev/null || true; pids+=("$pid"); names+=("$c"); fi
    rm -f "$STATE/pids/$c.pid"
  done
  for i in $(seq 1 100); do
    local alive=0
    for pid in "${pids[@]}"; do [[ -d /proc/$pid ]] && alive=1; done
    ((alive)) || break
    sleep 0.1
  done
  for pid in "${pids[@]}"; do [[ -d /proc/$pid ]] && kill -KILL "$pid" 2>/dev/null || true; done
  ((${#pids[@]})) && say "stopped ${names[*]} (pids ${pids[*]})"
  return 0
}

kc() { "$KUBECTL" --kubeconfig="$ADMIN_KUBECONFIG" "$@"; }
COMPONENTS=(etcd kube-apiserver kube-controller-manager kube-scheduler kwok)

# ---------------------------------------------------------------------------------------------- verbs
cmd_build() {
  gm_build "$@"
  echo "binaries:" >&2
  gm_bin_dirs | sed 's/^/  /' >&2
}

cmd_up() {
  if ! all_built; then
    [[ ${GREENMODEL_NO_BUILD:-} == 1 ]] && die "binaries not built yet (GREENMODEL_NO_BUILD=1): run e2e/cluster.sh build"
    say "binaries missing: building first"
    gm_build
  fi
  [[ -f $TOPOLOGY ]] || die "topology file not found: $TOPOLOGY"
  mkdir -p "$STATE"
  exec 9>"$STATE.lock"  # one `up`/`down` at a time (several test sessions may share this cluster)
  flock -w 600 9 || die "another e2e/cluster.sh holds $STATE.lock"
  ensure_pki
  # kwok's pod workers: 4 by default; a test that deletes a namespace of 30 pods while the next one creates
  # 60 kept all four busy with deletes (retried when a pod was already gone) and left new pods Pending for
  # minutes. A KwokConfiguration given in a file is not defaulted field by field, so every option is written
  # out at kwok v0.8.0's default (pkg/apis/config/v1alpha1/zz_generated.defaults.go) except the pod workers.
  { printf '%s\n' "apiVersion: config.kwok.x-k8s.io/v1alpha1" "kind: KwokConfiguration" "options:" \
      "  cidr: 10.0.0.0/24" "  enableDebuggingHandlers: true" "  enableContentionProfiling: false" \
      "  enableProfilingHandler: true" "  podPlayStageParallelism: $GM_KWOK_POD_WORKERS" \
      "  nodePlayStageParallelism: 4" "  nodeLeaseParallelism: 4" "  podsOnNodeSyncParallelism: 1" \
      "  enablePodsOnNodeSyncListPager: true" "  enablePodsOnNodeSyncStreamWatch: false"
    cat "$KWOK_DIR"/stages/*.yaml; } >"$STATE/kwok.yaml"
  start etcd; wait_healthy etcd
  start kube-apiserver; wait_healthy kube-apiserver
  local c
  for c in kube-controller-manager kube-scheduler kwok; do start "$c"; done
  for c in kube-controller-manager kube-scheduler kwok; do wait_healthy "$c"; done
  KUBECONFIG="$ADMIN_KUBECONFIG" "$(python_bin)" "$E2E_DIR/lib/nodes.py" sync "$TOPOLOGY" "$KUBECTL" \
    || die "could not create the nodes of $TOPOLOGY"
  if ! kc wait --for=condition=Ready node -l greenmodel.dev/simulated=true --timeout="${GM_UP_TIMEOUT}s" >/dev/null; then
    say "simulated nodes did not become Ready (kwok manages them)"; log_tail kwok; exit 1
  fi
  # The controller-manager creates the 'default' ServiceAccount of each namespace: proof it works.
  local deadline=$(( $(date +%s) + GM_UP_TIMEOUT ))
  until kc -n default get serviceaccount default >/dev/null 2>&1; do
    (( $(date +%s) > deadline )) && { say "no default ServiceAccount: controller-manager not working"; log_tail kube-controller-manager; exit 1; }
    sleep 0.5
  done
  say "up: $(kc get nodes -l greenmodel.dev/simulated=true --no-headers | grep -c ' Ready') nodes Ready," \
      "server $(kc version -o json | sed -n 's/.*"gitVersion": "\(v[^"]*\)".*/\1/p' | tail -1) at https://$HOST:$GM_PORT_APISERVER"
  echo "export KUBECONFIG=$ADMIN_KUBECONFIG  # or: eval \"\$(e2e/cluster.sh env)\"" >&2
}

cmd_env() {
  [[ -f $ADMIN_KUBECONFIG ]] || echo "# e2e/cluster.sh env: no cluster state in $STATE yet (run e2e/cluster.sh up)" >&2
  printf 'export KUBECONFIG=%q\n' "$ADMIN_KUBECONFIG"
  printf 'export PATH=%q:"$PATH"\n' "$K8S_BIN:$HELM_BIN:$ETCD_BIN:$KWOK_DIR/bin"
  printf 'export GREENMODEL_CLUSTER_DIR=%q\n' "$STATE"
}

cmd_down() {
  if [[ -d $STATE ]]; then
    exec 9>"$STATE.lock"
    flock -w 120 9 || die "another e2e/cluster.sh holds $STATE.lock"
  fi
  stop kwok kube-scheduler kube-controller-manager  # reverse start order: clients, API server, then etcd
  stop kube-apiserver
  stop etcd
  # Anything still running from our binaries with our state dir in its arguments (e.g. a lost pid file).
  local pid left=()
  for pid in $(pgrep -f -- "$STATE/" 2>/dev/null || true); do
    [[ $pid == "$$" ]] && continue
    if tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -qE "^($K8S_BIN|$ETCD_BIN|$KWOK_DIR/bin)/"; then
      kill -KILL "$pid" 2>/dev/null && left+=("$pid")
    fi
  done
  ((${#left[@]})) && say "killed stray processes: ${left[*]}"
  rm -rf "$STATE"
  rm -f "$STATE.lock"
  say "down: no cluster processes left, state $STATE removed"
}

case ${1:-} in
  build) shift; cmd_build "$@" ;;
  up) cmd_up ;;
  env) cmd_env ;;
  down) cmd_down ;;
  stop|start)
    verb=$1; shift
    (($#)) || die "usage: e2e/cluster.sh $verb COMPONENT... (${COMPONENTS[*]})"
    for c in "$@"; do [[ " ${COMPONENTS[*]} " == *" $c "* ]] || die "unknown component $c (${COMPONENTS[*]})"; done
    [[ -f $STATE/pki/.ok ]] || die "no cluster state in $STATE (run e2e/cluster.sh up)"
    if [[ $verb == stop ]]; then stop "$@"; else for c in "$@"; do start "$c"; wait_healthy "$c"; done; fi ;;
  *) sed -n '2,16p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 2 ;;
esac
