// Command kstatus prints what kstatus (and so Flux's Kustomization health checks and `kubectl wait`-style
// tooling built on sigs.k8s.io/cli-utils) computes for one Kubernetes object.
//
// It reads one object as JSON or YAML from stdin, or from the file named by -f, and prints
//
//	{"status": "Current|InProgress|Failed|Terminating|NotFound|Unknown", "message": "..."}
//
// The tests use it to check amlops' status contract against the real library instead of a re-implementation.
// Exit code 0 whenever a status was computed (whatever it is), 1 on unreadable input, 2 on bad usage.
package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/cli-utils/pkg/kstatus/status"
	"sigs.k8s.io/yaml"
)

type result struct {
	Status  string `json:"status"`
	Message string `json:"message"`
}

func main() {
	file := flag.String("f", "-", "object to read (JSON or YAML); - for stdin")
	flag.Parse()
	if flag.NArg() != 0 {
		fmt.Fprintln(os.Stderr, "usage: kstatus [-f FILE]")
		os.Exit(2)
	}
	if err := run(*file, os.Stdin, os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "kstatus:", err)
		os.Exit(1)
	}
}

func run(file string, stdin io.Reader, out io.Writer) error {
	var data []byte
	var err error
	if file == "-" {
		data, err = io.ReadAll(stdin)
	} else {
		data, err = os.ReadFile(file)
	}
	if err != nil {
		return err
	}
	// YAMLToJSON accepts JSON too (JSON is YAML), so one path serves both inputs.
	js, err := yaml.YAMLToJSON(data)
	if err != nil {
		return fmt.Errorf("parse: %w", err)
	}
	// Unstructured's own decoder keeps integers as int64 (plain encoding/json makes them float64, and
	// kstatus then cannot read metadata.generation).
	u := &unstructured.Unstructured{}
	if err := u.UnmarshalJSON(js); err != nil {
		return fmt.Errorf("decode: %w", err)
	}
	res, err := status.Compute(u)
	if err != nil {
		// Compute returns an error only together with Unknown; report it as kstatus would, not as a crash.
		res = &status.Result{Status: status.UnknownStatus, Message: err.Error()}
	}
	return json.NewEncoder(out).Encode(result{Status: res.Status.String(), Message: res.Message})
}
