// etcd for the local test node: the server's own entry point, nothing more.
//
// Debian's etcd (3.4) is older than the API server supports, and the etcd
// module's own main package is not installable with `go install` from the
// module proxy, so this one-file main pins a 3.6 server through go.mod.
package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() {
	etcdmain.Main(os.Args)
}
