package store

import (
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cockroachdb/pebble"
)

// encodedSample is every record of sample() as the key and value a Batch
// writes.
func encodedSample() *Batch {
	b := NewBatch()
	putAll(b, sample())
	return b
}

// TestDecodeTruncated: every proper prefix of every encoded value, and the
// value with a byte appended, fails to decode with an error (never a panic).
func TestDecodeTruncated(t *testing.T) {
	b := encodedSample()
	for _, o := range b.ops {
		k, v := b.buf[o.k:o.v], b.buf[o.v:o.e]
		if k[0] == kindAwait {
			continue
		}
		if err := decodeValue(k, v); err != nil {
			t.Fatalf("%q: whole value: %v", k, err)
		}
		for n := range len(v) {
			if err := decodeValue(k, v[:n]); err == nil {
				t.Fatalf("%q: prefix of %d/%d bytes decoded", k, n, len(v))
			}
		}
		if err := decodeValue(k, append(v[:len(v):len(v)], 0)); err == nil {
			t.Fatalf("%q: trailing byte accepted", k)
		}
	}
}

// decodeValue decodes v as the record kind of key k.
func decodeValue(k, v []byte) error {
	var err error
	switch k[0] {
	case kindRetained:
		_, err = decodeRetained(k[1:], v)
	case kindSession:
		_, err = decodeSession(string(k[1:]), v)
	case kindQueued:
		_, err = decodeQueued("c", 1, v)
	}
	return err
}

// FuzzDecode: no input makes a decoder panic or allocate beyond its input.
func FuzzDecode(f *testing.F) {
	b := encodedSample()
	for _, o := range b.ops {
		f.Add(b.buf[o.k:o.v][:1], b.buf[o.v:o.e])
	}
	f.Fuzz(func(t *testing.T, kind, v []byte) {
		if len(kind) == 0 {
			return
		}
		_ = decodeValue(kind[:1], v)
	})
}

// TestCorruptValue: records whose value or key cannot be decoded are listed
// in the Report with their key; everything else still loads.
func TestCorruptValue(t *testing.T) {
	db := open(t, t.TempDir(), Options{})
	defer db.Close()
	commit(t, db, encodedSample())
	bad := []struct{ key, value string }{
		{"Rbad/topic", "\x01\x05ab"}, // payload length past the end
		{"Sbad", "\x07"},             // unknown record version
		{"Q\x00\x03bad\x00\x00\x00\x00\x00\x00\x00\x01", "\x01\x03"}, // QoS 3
		{"Q\x00\x09short", "\x01"},                                   // key shorter than its client id
		{"A\x00\x01x\x00", ""},                                       // id of one byte
		{"A\x00\x01x\x00\x01", "junk"},                               // awaiting ids have no value
	}
	for _, b := range bad {
		if err := db.pdb.Set([]byte(b.key), []byte(b.value), pebble.Sync); err != nil {
			t.Fatal(err)
		}
	}
	got, rep := load(t, db)
	if len(rep.Unreadable) != len(bad) {
		t.Fatalf("report has %d lines, want %d: %q", len(rep.Unreadable), len(bad), rep.Unreadable)
	}
	for i, line := range rep.Unreadable {
		t.Log(line)
		if !strings.Contains(line, "bad") && !strings.Contains(line, "short") && !strings.Contains(line, `x\x00`) {
			t.Errorf("line %d does not name its key: %s", i, line)
		}
	}
	diff(t, "readable records", got, sample())
}

// TestOpenForeign: a directory holding a database of another format is
// refused with a clear error.
func TestOpenForeign(t *testing.T) {
	dir := t.TempDir()
	db := open(t, dir, Options{})
	if err := db.pdb.Set(metaKey, []byte("something else"), pebble.Sync); err != nil {
		t.Fatal(err)
	}
	db.Close()
	_, err := Open(dir, Options{})
	if err == nil || !strings.Contains(err.Error(), "unknown store format") {
		t.Fatalf("Open: %v", err)
	}
}

// TestDamagedFiles damages the database's files on disk in several ways;
// Open either fails with an error naming the store, or opens and Load
// reports or returns what it can. Nothing panics.
func TestDamagedFiles(t *testing.T) {
	damages := []struct {
		name   string
		damage func(t *testing.T, dir string)
	}{
		{"truncate every file to half", func(t *testing.T, dir string) {
			eachFile(t, dir, func(p string, fi os.FileInfo) { os.Truncate(p, fi.Size()/2) })
		}},
		{"truncate the log", func(t *testing.T, dir string) {
			eachFile(t, dir, func(p string, fi os.FileInfo) {
				if strings.HasSuffix(p, ".log") {
					os.Truncate(p, fi.Size()-7)
				}
			})
		}},
		{"garble every file", func(t *testing.T, dir string) {
			rng := rand.New(rand.NewPCG(1, 2))
			eachFile(t, dir, func(p string, fi os.FileInfo) {
				b, _ := os.ReadFile(p)
				for range 1 + len(b)/64 {
					if len(b) > 0 {
						b[rng.IntN(len(b))] ^= byte(1 + rng.IntN(255))
					}
				}
				os.WriteFile(p, b, 0o600)
			})
		}},
		{"garble the tables", func(t *testing.T, dir string) {
			eachFile(t, dir, func(p string, fi os.FileInfo) {
				if strings.HasSuffix(p, ".sst") {
					b, _ := os.ReadFile(p)
					for i := 0; i < len(b)/2; i += 16 {
						b[i] ^= 0x5a
					}
					os.WriteFile(p, b, 0o600)
				}
			})
		}},
		{"remove the manifest", func(t *testing.T, dir string) {
			eachFile(t, dir, func(p string, fi os.FileInfo) {
				if strings.HasPrefix(filepath.Base(p), "MANIFEST") {
					os.Remove(p)
				}
			})
		}},
		{"empty every file", func(t *testing.T, dir string) {
			eachFile(t, dir, func(p string, fi os.FileInfo) { os.Truncate(p, 0) })
		}},
	}
	for _, flushed := range []bool{false, true} {
		for _, d := range damages {
			name := d.name
			if flushed {
				name += " (flushed to tables)"
			}
			t.Run(name, func(t *testing.T) {
				dir := t.TempDir()
				db := open(t, dir, Options{})
				commit(t, db, encodedSample())
				if flushed {
					if err := db.pdb.Flush(); err != nil {
						t.Fatal(err)
					}
				}
				if err := db.Close(); err != nil {
					t.Fatal(err)
				}
				d.damage(t, dir)
				db, err := Open(dir, Options{})
				if err != nil {
					if !strings.HasPrefix(err.Error(), "store: open "+dir) {
						t.Fatalf("error does not name the store: %v", err)
					}
					t.Logf("Open: %v", err)
					return
				}
				defer db.Close()
				got, rep := load(t, db)
				t.Logf("loaded %d retained, %d sessions, %d queued; report %q",
					len(got.Retained), len(got.Sessions), len(got.Queued), rep.Unreadable)
			})
		}
	}
}

func eachFile(t *testing.T, dir string, f func(path string, fi os.FileInfo)) {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if fi, err := e.Info(); err == nil && fi.Mode().IsRegular() && e.Name() != "LOCK" {
			f(filepath.Join(dir, e.Name()), fi)
		}
	}
}

// TestMoveAside: a store Open refuses can be moved aside, and a new one
// opens empty in its place.
func TestMoveAside(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "db")
	db := open(t, dir, Options{})
	commit(t, db, encodedSample())
	db.Close()
	eachFile(t, dir, func(p string, fi os.FileInfo) { os.Truncate(p, 0) })
	if _, err := Open(dir, Options{}); err == nil {
		t.Fatal("emptied store opened")
	}
	to, err := MoveAside(dir)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(to, dir+".damaged-") {
		t.Fatalf("moved to %s", to)
	}
	if _, err := os.Stat(filepath.Join(to, "CURRENT")); err != nil {
		t.Fatalf("damaged files not kept: %v", err)
	}
	db = open(t, dir, Options{})
	defer db.Close()
	if got, rep := load(t, db); len(got.Retained)+len(got.Sessions)+len(got.Queued) != 0 || len(rep.Unreadable) != 0 {
		t.Fatalf("new store not empty: %+v %v", got, rep)
	}
}
