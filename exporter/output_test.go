package exporter

import (
	"reflect"
	"strings"
	"testing"
)

func TestParseOutput(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want Output
		err  string
	}{
		{in: "type=oci,dest=out.tar", want: Output{Type: "oci", Dest: "out.tar", Tar: true, Attrs: map[string]string{}}},
		{in: "type=oci,dest=dir,tar=false", want: Output{Type: "oci", Dest: "dir", Tar: false, Attrs: map[string]string{}}},
		{in: "type=docker,dest=x.tar,name=app:v1", want: Output{Type: "docker", Dest: "x.tar", Tar: true, Attrs: map[string]string{"name": "app:v1"}}},
		{in: "type=local,dest=dir", want: Output{Type: "local", Dest: "dir", Tar: true, Attrs: map[string]string{}}},
		{in: "type=tar,dest=x.tar", want: Output{Type: "tar", Dest: "x.tar", Tar: true, Attrs: map[string]string{}}},
		{in: "type=tar,dest=-", want: Output{Type: "tar", Dest: "-", Tar: true, Attrs: map[string]string{}}},
		{in: "type=oci,dest=-,compression=zstd,compression-level=3", want: Output{Type: "oci", Dest: "-", Tar: true, Attrs: map[string]string{"compression": "zstd", "compression-level": "3"}}},
		{in: "dir", want: Output{Type: "local", Dest: "dir", Tar: true, Attrs: map[string]string{}}},
		{in: "./out/rootfs", want: Output{Type: "local", Dest: "./out/rootfs", Tar: true, Attrs: map[string]string{}}},
		{in: "-", want: Output{Type: "tar", Dest: "-", Tar: true, Attrs: map[string]string{}}},
		{in: `type=image,"name=a:1,b:2",push=true`, want: Output{Type: "image", Tar: true, Attrs: map[string]string{"name": "a:1,b:2", "push": "true"}}},
		{in: "type=registry,name=127.0.0.1:5000/x", want: Output{Type: "image", Tar: true, Attrs: map[string]string{"name": "127.0.0.1:5000/x", "push": "true"}}},
		{in: "Type=OCI,dest=x", err: "unknown type"},
		{in: "type=zip,dest=x", err: "valid types: oci, docker, local, tar, image, registry"},
		{in: "dest=x", err: "no type"},
		{in: "type=oci", err: "needs dest"},
		{in: "type=local,dest=-", err: "needs dest=DIRECTORY"},
		{in: "type=local", err: "needs dest=DIRECTORY"},
		{in: "type=oci,dest=x,tar=maybe", err: "want true or false"},
		{in: "type=oci,dest=-,tar=false", err: "cannot go to stdout"},
		{in: "type=local,dest=d,tar=false", err: "tar=false applies"},
		{in: "type=oci,dest=x,novalue", err: "not key=value"},
		{in: "", err: "empty"},
		{in: `type=oci,dest="unterminated`, err: "output"},
	} {
		got, err := ParseOutput(tc.in)
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("ParseOutput(%q) = %+v, %v; want error containing %q", tc.in, got, err, tc.err)
			}
			continue
		}
		if err != nil || !reflect.DeepEqual(got, tc.want) {
			t.Errorf("ParseOutput(%q) = %+v, %v; want %+v", tc.in, got, err, tc.want)
		}
	}
}

func TestOutputStringRoundTrip(t *testing.T) {
	for _, s := range []string{"type=oci,dest=out.tar", "type=oci,dest=d,tar=false,name=x", "type=local,dest=dir"} {
		o, err := ParseOutput(s)
		if err != nil {
			t.Fatal(err)
		}
		if o.String() != s {
			t.Errorf("%q -> %q", s, o.String())
		}
	}
}
