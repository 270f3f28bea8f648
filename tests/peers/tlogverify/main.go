// Command tlogverify is an independent verifier of TrustFleet's audit log, written against
// golang.org/x/mod/sumdb/note and sumdb/tlog (Go's checksum-database code) and the standard
// library only. It shares no code with the Python implementation it checks.
//
// Subcommands (flags may be written -flag or --flag):
//
//	note        --vkey VKEY --note FILE [--witness VKEY ...]
//	inclusion   --vkey VKEY --note FILE --index I --entry FILE --proof FILE
//	consistency --vkey VKEY --old FILE --new FILE --proof FILE
//	tiles       --vkey VKEY --base DIR_OR_URL [--cacert PEM] [--max-entries N] [--witness VKEY ...]
//	gen         --n N --seed HEX --origin ORIGIN --out DIR
//
// On success the result is one JSON object on stdout and the exit status is 0. A failed
// verification exits 1 and a usage error exits 2, each with one line on stderr.
package main

import (
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"time"

	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"
)

// Bounds on everything read from outside.
const (
	maxNoteBytes       = 64 << 10
	maxEntryBytes      = 1 << 20
	maxProofHashes     = 64
	maxProofFileBytes  = maxProofHashes * 64
	maxCACertBytes     = 1 << 20
	tileHeight         = 8
	tileWidth          = 1 << tileHeight
	maxTileBytes       = tileWidth * tlog.HashSize
	maxBundleBytes     = tileWidth * (2 + 0xFFFF)
	defaultMaxEntries  = 1 << 22
	httpTimeout        = 30 * time.Second
	algCosignatureV1   = 0x04
	cosignaturePayload = 8 + ed25519.SignatureSize
)

// failure is a verification that did not pass (exit 1); usageError is a bad invocation (exit 2).
type failure struct{ msg string }

func (f *failure) Error() string { return f.msg }

type usageError struct{ msg string }

func (u *usageError) Error() string { return u.msg }

func fail(format string, args ...any) error  { return &failure{fmt.Sprintf(format, args...)} }
func usage(format string, args ...any) error { return &usageError{fmt.Sprintf(format, args...)} }

var commands = map[string]func([]string) (any, error){
	"note":        cmdNote,
	"inclusion":   cmdInclusion,
	"consistency": cmdConsistency,
	"tiles":       cmdTiles,
	"gen":         cmdGen,
}

func main() {
	os.Exit(run(os.Args[1:]))
}

func run(args []string) int {
	if len(args) == 0 || commands[args[0]] == nil {
		fmt.Fprintln(os.Stderr, "usage: tlogverify note|inclusion|consistency|tiles|gen [flags]")
		return 2
	}
	result, err := commands[args[0]](args[1:])
	var u *usageError
	switch {
	case errors.As(err, &u):
		fmt.Fprintf(os.Stderr, "tlogverify %s: %s\n", args[0], u.msg)
		return 2
	case err != nil:
		fmt.Fprintf(os.Stderr, "tlogverify %s: %s\n", args[0], oneLine(err.Error()))
		return 1
	}
	out, err := json.Marshal(result)
	if err != nil {
		fmt.Fprintf(os.Stderr, "tlogverify %s: %s\n", args[0], err)
		return 1
	}
	fmt.Println(string(out))
	return 0
}

func oneLine(s string) string { return strings.ReplaceAll(s, "\n", " ") }

// ---- flags -------------------------------------------------------------------------------

func parseFlags(fs *flag.FlagSet, args []string, required ...string) error {
	fs.SetOutput(io.Discard)
	if err := fs.Parse(args); err != nil {
		return usage("%v", err)
	}
	if fs.NArg() != 0 {
		return usage("unexpected argument %q", fs.Arg(0))
	}
	for _, name := range required {
		if fs.Lookup(name).Value.String() == "" {
			return usage("--%s is required", name)
		}
	}
	return nil
}

// readInput reads a file named on the command line, at most max bytes.
func readInput(path string, max int64) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, usage("%v", err)
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, max+1))
	if err != nil {
		return nil, usage("%v", err)
	}
	if int64(len(data)) > max {
		return nil, fail("%s is larger than %d bytes", path, max)
	}
	return data, nil
}

// ---- checkpoints and notes ---------------------------------------------------------------

type checkpoint struct {
	Origin     string    `json:"origin"`
	Size       int64     `json:"size"`
	Root       tlog.Hash `json:"-"`
	RootB64    string    `json:"root"`
	Extensions []string  `json:"extensions"`
}

// parseCheckpoint parses a C2SP tlog-checkpoint body: origin, decimal size, base64 root hash,
// then optional extension lines.
func parseCheckpoint(text string) (checkpoint, error) {
	if !strings.HasSuffix(text, "\n") {
		return checkpoint{}, fail("checkpoint does not end in a newline")
	}
	lines := strings.Split(strings.TrimSuffix(text, "\n"), "\n")
	if len(lines) < 3 || lines[0] == "" {
		return checkpoint{}, fail("checkpoint needs an origin, a size and a root hash")
	}
	size, err := strconv.ParseInt(lines[1], 10, 64)
	if err != nil || size < 0 || strconv.FormatInt(size, 10) != lines[1] {
		return checkpoint{}, fail("checkpoint size %q is not a decimal number", lines[1])
	}
	root, err := base64.StdEncoding.DecodeString(lines[2])
	if err != nil || len(root) != tlog.HashSize || base64.StdEncoding.EncodeToString(root) != lines[2] {
		return checkpoint{}, fail("checkpoint root %q is not a base64 SHA-256 hash", lines[2])
	}
	for _, ext := range lines[3:] {
		if ext == "" {
			return checkpoint{}, fail("checkpoint has an empty extension line")
		}
	}
	c := checkpoint{Origin: lines[0], Size: size, RootB64: lines[2], Extensions: lines[3:]}
	copy(c.Root[:], root)
	return c, nil
}

// openCheckpoint verifies the log's signature on a signed note and parses its checkpoint.
func openCheckpoint(vkey string, msg []byte) (*note.Note, checkpoint, error) {
	verifier, err := note.NewVerifier(vkey)
	if err != nil {
		return nil, checkpoint{}, usage("bad --vkey: %v", err)
	}
	if len(msg) > maxNoteBytes {
		return nil, checkpoint{}, fail("note is larger than %d bytes", maxNoteBytes)
	}
	n, err := note.Open(msg, note.VerifierList(verifier))
	if err != nil {
		return nil, checkpoint{}, fail("note: %v", err)
	}
	c, err := parseCheckpoint(n.Text)
	if err != nil {
		return nil, checkpoint{}, err
	}
	if c.Origin != verifier.Name() {
		return nil, checkpoint{}, fail("checkpoint origin %q is not the key's name %q", c.Origin, verifier.Name())
	}
	return n, c, nil
}

func openCheckpointFile(vkey, path string) (*note.Note, checkpoint, error) {
	msg, err := readInput(path, maxNoteBytes)
	if err != nil {
		return nil, checkpoint{}, err
	}
	return openCheckpoint(vkey, msg)
}

type cosigner struct {
	name   string
	keyID  uint32
	public ed25519.PublicKey
}

// parseCosignerKey parses a tlog-cosignature/v1 verifier key: name+hex(keyid)+base64(0x04||key).
func parseCosignerKey(vkey string) (cosigner, error) {
	parts := strings.SplitN(vkey, "+", 3)
	if len(parts) != 3 || parts[0] == "" || len(parts[1]) != 8 {
		return cosigner{}, usage("bad --witness key %q", vkey)
	}
	id, err1 := strconv.ParseUint(parts[1], 16, 32)
	key, err2 := base64.StdEncoding.DecodeString(parts[2])
	if err1 != nil || err2 != nil || len(key) != 1+ed25519.PublicKeySize || key[0] != algCosignatureV1 {
		return cosigner{}, usage("bad --witness key %q (want a cosignature/v1 key)", vkey)
	}
	digest := sha256.Sum256(append([]byte(parts[0]+"\n"), key...))
	if binary.BigEndian.Uint32(digest[:4]) != uint32(id) {
		return cosigner{}, usage("--witness key %q: key id does not match the key", vkey)
	}
	return cosigner{name: parts[0], keyID: uint32(id), public: ed25519.PublicKey(key[1:])}, nil
}

type cosignature struct {
	Name string `json:"name"`
	Time uint64 `json:"time"`
}

// checkCosignature finds and verifies the witness's cosignature/v1 line on the note.
func checkCosignature(n *note.Note, w cosigner) (cosignature, error) {
	for _, sig := range n.UnverifiedSigs {
		if sig.Name != w.name || sig.Hash != w.keyID {
			continue
		}
		raw, err := base64.StdEncoding.DecodeString(sig.Base64)
		if err != nil || len(raw) != 4+cosignaturePayload {
			return cosignature{}, fail("malformed cosignature by %s", w.name)
		}
		stamp := binary.BigEndian.Uint64(raw[4:12])
		msg := fmt.Sprintf("cosignature/v1\ntime %d\n%s", stamp, n.Text)
		if !ed25519.Verify(w.public, []byte(msg), raw[12:]) {
			return cosignature{}, fail("bad cosignature by %s", w.name)
		}
		return cosignature{Name: w.name, Time: stamp}, nil
	}
	return cosignature{}, fail("no cosignature by %s", w.name)
}

// witnessFlag collects --witness keys, each parsed as it is given (a bad one is a usage error).
type witnessFlag struct{ cosigners []cosigner }

func (w *witnessFlag) String() string { return fmt.Sprintf("%d witness keys", len(w.cosigners)) }

func (w *witnessFlag) Set(vkey string) error {
	c, err := parseCosignerKey(vkey)
	if err != nil {
		return err
	}
	w.cosigners = append(w.cosigners, c)
	return nil
}

func (w *witnessFlag) register(fs *flag.FlagSet) {
	fs.Var(w, "witness", "a witness's cosignature/v1 verifier key (repeatable)")
}

// check verifies each witness's cosignature on the note.
func (w *witnessFlag) check(n *note.Note) ([]cosignature, error) {
	return checkCosignatures(n, w.cosigners)
}

func checkCosignatures(n *note.Note, cosigners []cosigner) ([]cosignature, error) {
	found := make([]cosignature, 0, len(cosigners))
	for _, w := range cosigners {
		sig, err := checkCosignature(n, w)
		if err != nil {
			return nil, err
		}
		found = append(found, sig)
	}
	return found, nil
}

func cmdNote(args []string) (any, error) {
	fs := flag.NewFlagSet("note", flag.ContinueOnError)
	vkey := fs.String("vkey", "", "the log's Ed25519 verifier key")
	file := fs.String("note", "", "the signed checkpoint")
	var witnesses witnessFlag
	witnesses.register(fs)
	if err := parseFlags(fs, args, "vkey", "note"); err != nil {
		return nil, err
	}
	n, c, err := openCheckpointFile(*vkey, *file)
	if err != nil {
		return nil, err
	}
	found, err := witnesses.check(n)
	if err != nil {
		return nil, err
	}
	return map[string]any{
		"origin": c.Origin, "size": c.Size, "root": c.RootB64,
		"extensions": c.Extensions, "witnesses": found,
	}, nil
}

// ---- proofs ------------------------------------------------------------------------------

// readProof reads a proof file: one base64 hash per line.
func readProof(path string) ([]tlog.Hash, error) {
	data, err := readInput(path, maxProofFileBytes)
	if err != nil {
		return nil, err
	}
	var proof []tlog.Hash
	for i, line := range strings.Split(string(data), "\n") {
		if line == "" {
			continue
		}
		raw, err := base64.StdEncoding.DecodeString(line)
		if err != nil || len(raw) != tlog.HashSize {
			return nil, fail("proof line %d is not a base64 SHA-256 hash", i+1)
		}
		if len(proof) == maxProofHashes {
			return nil, fail("proof has more than %d hashes", maxProofHashes)
		}
		var h tlog.Hash
		copy(h[:], raw)
		proof = append(proof, h)
	}
	return proof, nil
}

func cmdInclusion(args []string) (any, error) {
	fs := flag.NewFlagSet("inclusion", flag.ContinueOnError)
	vkey := fs.String("vkey", "", "the log's Ed25519 verifier key")
	file := fs.String("note", "", "the signed checkpoint")
	index := fs.Int64("index", -1, "the entry's leaf index")
	entryFile := fs.String("entry", "", "the entry's bytes")
	proofFile := fs.String("proof", "", "the inclusion proof")
	if err := parseFlags(fs, args, "vkey", "note", "entry", "proof"); err != nil {
		return nil, err
	}
	if *index < 0 {
		return nil, usage("--index must be a leaf index (0 or more)")
	}
	_, c, err := openCheckpointFile(*vkey, *file)
	if err != nil {
		return nil, err
	}
	entry, err := readInput(*entryFile, maxEntryBytes)
	if err != nil {
		return nil, err
	}
	proof, err := readProof(*proofFile)
	if err != nil {
		return nil, err
	}
	if *index >= c.Size {
		return nil, fail("index %d is not in a tree of size %d", *index, c.Size)
	}
	leaf := tlog.RecordHash(entry)
	if err := tlog.CheckRecord(proof, c.Size, c.Root, *index, leaf); err != nil {
		return nil, fail("inclusion proof does not lead to the checkpoint's root: %v", err)
	}
	return map[string]any{
		"origin": c.Origin, "size": c.Size, "root": c.RootB64, "index": *index,
		"leaf_hash": base64.StdEncoding.EncodeToString(leaf[:]),
	}, nil
}

func cmdConsistency(args []string) (any, error) {
	fs := flag.NewFlagSet("consistency", flag.ContinueOnError)
	vkey := fs.String("vkey", "", "the log's Ed25519 verifier key")
	oldFile := fs.String("old", "", "the older signed checkpoint")
	newFile := fs.String("new", "", "the newer signed checkpoint")
	proofFile := fs.String("proof", "", "the consistency proof")
	if err := parseFlags(fs, args, "vkey", "old", "new", "proof"); err != nil {
		return nil, err
	}
	_, old, err := openCheckpointFile(*vkey, *oldFile)
	if err != nil {
		return nil, err
	}
	_, cur, err := openCheckpointFile(*vkey, *newFile)
	if err != nil {
		return nil, err
	}
	proof, err := readProof(*proofFile)
	if err != nil {
		return nil, err
	}
	if err := checkConsistency(old, cur, proof); err != nil {
		return nil, err
	}
	return map[string]any{
		"origin": cur.Origin, "old_size": old.Size, "new_size": cur.Size,
		"old_root": old.RootB64, "new_root": cur.RootB64,
	}, nil
}

func checkConsistency(old, cur checkpoint, proof []tlog.Hash) error {
	switch {
	case old.Origin != cur.Origin:
		return fail("checkpoints are of different logs (%q, %q)", old.Origin, cur.Origin)
	case old.Size > cur.Size:
		return fail("rollback: the new checkpoint (size %d) is smaller than the old (size %d)", cur.Size, old.Size)
	case old.Size == cur.Size && old.Root != cur.Root:
		return fail("split view: two checkpoints of size %d with different roots", old.Size)
	case old.Size == cur.Size || old.Size == 0:
		if len(proof) != 0 {
			return fail("consistency proof from size %d to %d must be empty", old.Size, cur.Size)
		}
		return nil
	}
	if err := tlog.CheckTree(proof, cur.Size, cur.Root, old.Size, old.Root); err != nil {
		return fail("consistency proof from size %d to %d does not verify: %v", old.Size, cur.Size, err)
	}
	return nil
}
