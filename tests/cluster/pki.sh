# The local node's PKI, as hack/local-up-cluster.sh and kubeadm lay it out:
# one CA, the API server's serving certificate, one client certificate per
# component (the user name and group RBAC's bootstrap roles expect), the
# kubelet's serving and client certificates, and the service-account keys.
# Made with openssl into $1 at every `up`; nothing here outlives `down`.
# Sourced by scripts/cluster.sh.

make_pki() { # dir
  local dir=$1
  mkdir -p "$dir" && chmod 700 "$dir"
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 365 \
    -subj "/CN=linnix-node-ca" -keyout "$dir/ca.key" -out "$dir/ca.crt" 2>/dev/null
  openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out "$dir/sa.key" 2>/dev/null
  openssl pkey -in "$dir/sa.key" -pubout -out "$dir/sa.pub"

  # name, subject, extended key usage, subject alternative names
  issue "$dir" apiserver "/CN=kube-apiserver" serverAuth \
    "DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local,DNS:localhost,IP:127.0.0.1,IP:$NODE_IP,IP:$KUBERNETES_SERVICE_IP"
  issue "$dir" kubelet-serving "/CN=system:node:$NODE_NAME/O=system:nodes" serverAuth "DNS:$NODE_NAME,IP:$NODE_IP,IP:127.0.0.1"
  issue "$dir" apiserver-kubelet-client "/CN=kube-apiserver-kubelet-client/O=system:masters" clientAuth
  issue "$dir" admin "/CN=linnix-node-admin/O=system:masters" clientAuth
  issue "$dir" kubelet "/CN=system:node:$NODE_NAME/O=system:nodes" clientAuth
  issue "$dir" controller-manager "/CN=system:kube-controller-manager" clientAuth
  issue "$dir" scheduler "/CN=system:kube-scheduler" clientAuth
  issue "$dir" kube-proxy "/CN=system:kube-proxy" clientAuth
}

issue() { # dir name subject eku [san]
  local dir=$1 name=$2 subject=$3 eku=$4 san=${5:-}
  local ext
  ext=$(mktemp)
  {
    echo "basicConstraints=critical,CA:FALSE"
    echo "keyUsage=critical,digitalSignature,keyEncipherment"
    echo "extendedKeyUsage=$eku"
    [ -z "$san" ] || echo "subjectAltName=$san"
  } >"$ext"
  openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj "$subject" \
    -keyout "$dir/$name.key" -out "$dir/$name.csr" 2>/dev/null
  openssl x509 -req -in "$dir/$name.csr" -CA "$dir/ca.crt" -CAkey "$dir/ca.key" -CAcreateserial \
    -days 365 -extfile "$ext" -out "$dir/$name.crt" 2>/dev/null
  rm -f "$ext" "$dir/$name.csr"
}

# A kubeconfig for one of the client certificates above.
make_kubeconfig() { # pki-dir name out
  local pki=$1 name=$2 out=$3
  cat >"$out" <<EOF
apiVersion: v1
kind: Config
clusters:
- name: linnix-node
  cluster:
    server: https://$NODE_IP:6443
    certificate-authority-data: $(base64 -w0 "$pki/ca.crt")
users:
- name: $name
  user:
    client-certificate-data: $(base64 -w0 "$pki/$name.crt")
    client-key-data: $(base64 -w0 "$pki/$name.key")
contexts:
- name: linnix-node
  context: {cluster: linnix-node, user: $name}
current-context: linnix-node
EOF
  chmod 600 "$out"
}
