// Command compose-config loads a Compose file the way `docker compose config` does, through
// compose-go (the loader Docker Compose itself uses): variable interpolation from the
// environment (a `${NAME:?message}` without a value is an error), the compose-spec schema, and
// the model's own checks. It prints the resolved project as JSON, or the loader's error and
// exits 1. No Docker engine is needed. Usage: compose-config FILE
package main

import (
	"context"
	"fmt"
	"os"

	"github.com/compose-spec/compose-go/v2/cli"
)

func load(path string) ([]byte, error) {
	options, err := cli.NewProjectOptions([]string{path}, cli.WithOsEnv)
	if err != nil {
		return nil, err
	}
	project, err := options.LoadProject(context.Background())
	if err != nil {
		return nil, err
	}
	return project.MarshalJSON()
}

func main() {
	if len(os.Args) != 2 {
		fmt.Fprintln(os.Stderr, "usage: compose-config FILE")
		os.Exit(2)
	}
	out, err := load(os.Args[1])
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	fmt.Println(string(out))
}
