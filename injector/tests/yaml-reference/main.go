// Command yaml-reference prints what kubectl reads from a YAML stream on
// stdin: per document, the JSON kubectl sends, or the error that stops it.
//
// It is kubectl's own path (k8s.io/cli-runtime StreamVisitor.Visit):
// apimachinery's YAMLOrJSONDecoder splits the stream and turns each
// document into JSON with sigs.k8s.io/yaml, which reads YAML with go-yaml
// v2 (go.yaml.in/yaml/v2). Documents that are empty or null are skipped,
// as kubectl skips them.
//
// Output, one line each: `doc <json>` per document, then `error <message>`
// if the stream stops at an error.
package main

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"

	"k8s.io/apimachinery/pkg/util/yaml"
)

// raw keeps a document's JSON as runtime.RawExtension does.
type raw struct{ data []byte }

func (r *raw) UnmarshalJSON(in []byte) error {
	if !bytes.Equal(in, []byte("null")) {
		r.data = append(r.data[:0], in...)
	}
	return nil
}

func main() {
	out := bufio.NewWriter(os.Stdout)
	defer out.Flush()
	d := yaml.NewYAMLOrJSONDecoder(os.Stdin, 4096)
	for {
		var doc raw
		if err := d.Decode(&doc); err != nil {
			if !errors.Is(err, io.EOF) {
				fmt.Fprintf(out, "error %q\n", err.Error())
			}
			return
		}
		data := bytes.TrimSpace(doc.data)
		if len(data) == 0 || bytes.Equal(data, []byte("null")) {
			continue
		}
		fmt.Fprintf(out, "doc %s\n", data)
	}
}
