package parser

import (
	"errors"
	"strings"
	"testing"

	"github.com/moby/buildkit/frontend/dockerfile/instructions"
)

func TestParseStages(t *testing.T) {
	df, err := Parse("Dockerfile", []byte("ARG BASE=busybox\nFROM $BASE AS build\nRUN echo hi\nFROM scratch\nCOPY --from=build /x /x\n"))
	if err != nil {
		t.Fatal(err)
	}
	if len(df.MetaArgs) != 1 || df.MetaArgs[0].Args[0].Key != "BASE" {
		t.Fatalf("meta args: %+v", df.MetaArgs)
	}
	if len(df.Stages) != 2 || df.Stages[0].Name != "build" || df.Stages[1].BaseName != "scratch" {
		t.Fatalf("stages: %+v", df.Stages)
	}
	if _, ok := df.Stages[0].Commands[0].(*instructions.RunCommand); !ok {
		t.Fatalf("first command is %T", df.Stages[0].Commands[0])
	}
}

func TestParseErrorsNameFileAndLine(t *testing.T) {
	cases := []struct {
		name, text string
		line       int
		msg        string
	}{
		{"unknown instruction", "FROM scratch\nFOO bar\n", 2, "unknown instruction"},
		{"no from", "RUN true\n", 1, "FROM"},
		{"empty", "# nothing\n", 1, "no instructions"},
		{"bad flag", "FROM scratch\nCOPY --nope=1 a b\n", 2, "nope"},
		{"env without value", "FROM scratch\n\nENV\n", 3, "ENV"},
		{"other frontend", "# syntax=example.com/my/frontend:1\nFROM scratch\n", 1, "not supported"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := Parse("ctx/Dockerfile", []byte(c.text))
			var pe *Error
			if !errors.As(err, &pe) {
				t.Fatalf("error %v is not a *Error", err)
			}
			if pe.Line != c.line || pe.Path != "ctx/Dockerfile" {
				t.Fatalf("got %s:%d, want line %d", pe.Path, pe.Line, c.line)
			}
			if !strings.Contains(err.Error(), c.msg) || !strings.HasPrefix(err.Error(), "ctx/Dockerfile") {
				t.Fatalf("message %q lacks %q", err, c.msg)
			}
		})
	}
}

func TestSyntaxDirectiveAccepted(t *testing.T) {
	for _, syntax := range []string{"docker/dockerfile:1", "docker/dockerfile:1.7-labs", "docker.io/docker/dockerfile:1@sha256:abc", "docker/dockerfile-upstream:master"} {
		if _, err := Parse("Dockerfile", []byte("# syntax="+syntax+"\nFROM scratch\n")); err != nil {
			t.Errorf("%s: %v", syntax, err)
		}
	}
}
