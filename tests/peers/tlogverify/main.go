// Command tlogverify is an independent verifier of TrustFleet's audit log, written against
// golang.org/x/mod/sumdb/note and sumdb/tlog (Go's checksum-database code) and the standard
// library only. It shares no code with the Python implementation it checks.
//
// Subcommands (flags may be written -flag or --flag):
//
//	note        --vkey VKEY --note FILE [--witness VKEY ...]
//	inclusion   --vkey VKEY --note FILE --index I --entry FILE --proof FILE
//	consistency --vkey VKEY --old FILE --new FILE --proof FILE
//	tiles       --vkey VKEY --base DIR_OR_URL [--cacert PEM] [--max-entries N]
//	gen         --n N --seed HEX --origin ORIGIN --out DIR
//
// On success the result is one JSON object on stdout and the exit status is 0. A failed
// verification exits 1 and a usage error exits 2, each with one line on stderr.
package main

import (
	"bytes"
	"crypto/ed25519"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"sort"
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

type multiFlag []string

func (m *multiFlag) String() string     { return strings.Join(*m, ",") }
func (m *multiFlag) Set(s string) error { *m = append(*m, s); return nil }

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

func cmdNote(args []string) (any, error) {
	fs := flag.NewFlagSet("note", flag.ContinueOnError)
	vkey := fs.String("vkey", "", "the log's Ed25519 verifier key")
	file := fs.String("note", "", "the signed checkpoint")
	var witnesses multiFlag
	fs.Var(&witnesses, "witness", "a witness's cosignature/v1 verifier key (repeatable)")
	if err := parseFlags(fs, args, "vkey", "note"); err != nil {
		return nil, err
	}
	cosigners := make([]cosigner, 0, len(witnesses))
	for _, w := range witnesses {
		c, err := parseCosignerKey(w)
		if err != nil {
			return nil, err
		}
		cosigners = append(cosigners, c)
	}
	n, c, err := openCheckpointFile(*vkey, *file)
	if err != nil {
		return nil, err
	}
	found := make([]cosignature, 0, len(cosigners))
	for _, w := range cosigners {
		sig, err := checkCosignature(n, w)
		if err != nil {
			return nil, err
		}
		found = append(found, sig)
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

// ---- tiles -------------------------------------------------------------------------------

// fetcher reads a file of a published log (a directory or an HTTP(S) base URL).
type fetcher interface {
	// get returns the file's bytes (at most max), or os.ErrNotExist when it is absent.
	get(path string, max int64) ([]byte, error)
}

type dirFetcher struct{ root string }

func (d dirFetcher) get(path string, max int64) ([]byte, error) {
	f, err := os.Open(filepath.Join(d.root, filepath.FromSlash(path)))
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return readCapped(f, path, max)
}

type httpFetcher struct {
	base   string
	client *http.Client
}

func (h httpFetcher) get(path string, max int64) ([]byte, error) {
	resp, err := h.client.Get(h.base + "/" + path)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode == http.StatusNotFound {
		return nil, os.ErrNotExist
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET %s: HTTP %d", path, resp.StatusCode)
	}
	return readCapped(resp.Body, path, max)
}

func readCapped(r io.Reader, path string, max int64) ([]byte, error) {
	data, err := io.ReadAll(io.LimitReader(r, max+1))
	if err != nil {
		return nil, err
	}
	if int64(len(data)) > max {
		return nil, fmt.Errorf("%s is larger than %d bytes", path, max)
	}
	return data, nil
}

func newFetcher(base, cacert string) (fetcher, error) {
	if !strings.HasPrefix(base, "https://") && !strings.HasPrefix(base, "http://") {
		if cacert != "" {
			return nil, usage("--cacert applies to an https:// base only")
		}
		return dirFetcher{root: base}, nil
	}
	tlsConfig := &tls.Config{MinVersion: tls.VersionTLS12}
	if cacert != "" {
		pem, err := readInput(cacert, maxCACertBytes)
		if err != nil {
			return nil, err
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, usage("--cacert %s holds no PEM certificate", cacert)
		}
		tlsConfig.RootCAs = pool
	}
	client := &http.Client{
		Timeout:   httpTimeout,
		Transport: &http.Transport{TLSClientConfig: tlsConfig, Proxy: nil},
	}
	return httpFetcher{base: strings.TrimSuffix(base, "/"), client: client}, nil
}

// c2spPath maps Go's tile path (tile/8/L/N[.p/W]) to the C2SP tlog-tiles path (tile/L/N[.p/W]).
func c2spPath(t tlog.Tile) string {
	return "tile/" + strings.TrimPrefix(t.Path(), fmt.Sprintf("tile/%d/", tileHeight))
}

// tileReader serves hash tiles to tlog.TileHashReader, which authenticates them against the
// checkpoint's root. Upper-level tiles are cached (they are read for every bundle).
type tileReader struct {
	src   fetcher
	cache map[tlog.Tile][]byte
}

func (r *tileReader) Height() int { return tileHeight }

func (r *tileReader) ReadTiles(tiles []tlog.Tile) ([][]byte, error) {
	data := make([][]byte, len(tiles))
	for i, t := range tiles {
		if cached, ok := r.cache[t]; ok {
			data[i] = cached
			continue
		}
		content, err := readTile(r.src, t)
		if err != nil {
			return nil, err
		}
		if t.L > 0 {
			r.cache[t] = content
		}
		data[i] = content
	}
	return data, nil
}

func (r *tileReader) SaveTiles([]tlog.Tile, [][]byte) {}

// readTile reads a hash tile, falling back to the full tile when a partial one is gone.
func readTile(src fetcher, t tlog.Tile) ([]byte, error) {
	want := t.W * tlog.HashSize
	content, err := src.get(c2spPath(t), maxTileBytes)
	if errors.Is(err, os.ErrNotExist) && t.W < tileWidth {
		full := t
		full.W = tileWidth
		content, err = src.get(c2spPath(full), maxTileBytes)
	}
	if err != nil {
		return nil, fmt.Errorf("tile %s: %w", c2spPath(t), err)
	}
	if len(content) < want || len(content)%tlog.HashSize != 0 {
		return nil, fmt.Errorf("tile %s holds %d bytes, want %d", c2spPath(t), len(content), want)
	}
	return content[:want], nil
}

// decodeBundle splits a C2SP entry bundle (2-byte big-endian length || bytes, repeated).
func decodeBundle(data []byte) ([][]byte, error) {
	var entries [][]byte
	for len(data) > 0 {
		if len(data) < 2 {
			return nil, errors.New("truncated entry length")
		}
		n := int(binary.BigEndian.Uint16(data))
		if len(data) < 2+n {
			return nil, errors.New("truncated entry")
		}
		entries = append(entries, data[2:2+n])
		data = data[2+n:]
	}
	return entries, nil
}

// readBundle reads the entries of bundle k of a tree of `size` (the full bundle's prefix when
// the partial one is gone).
func readBundle(src fetcher, k, size int64) ([][]byte, error) {
	width := int(size - k*tileWidth)
	if width > tileWidth {
		width = tileWidth
	}
	t := tlog.Tile{H: tileHeight, L: -1, N: k, W: width}
	path := "tile/entries/" + strings.TrimPrefix(t.Path(), fmt.Sprintf("tile/%d/data/", tileHeight))
	data, err := src.get(path, maxBundleBytes)
	exact := true
	if errors.Is(err, os.ErrNotExist) && width < tileWidth {
		t.W = tileWidth
		path = "tile/entries/" + strings.TrimPrefix(t.Path(), fmt.Sprintf("tile/%d/data/", tileHeight))
		data, err = src.get(path, maxBundleBytes)
		exact = false
	}
	if err != nil {
		return nil, fail("entry bundle %s: %v", path, err)
	}
	entries, err := decodeBundle(data)
	if err != nil || len(entries) > tileWidth || (exact && len(entries) != width) || len(entries) < width {
		return nil, fail("entry bundle %s is malformed (want %d entries)", path, width)
	}
	return entries[:width], nil
}

func cmdTiles(args []string) (any, error) {
	fs := flag.NewFlagSet("tiles", flag.ContinueOnError)
	vkey := fs.String("vkey", "", "the log's Ed25519 verifier key")
	base := fs.String("base", "", "the log's directory or https:// base URL")
	cacert := fs.String("cacert", "", "PEM CA certificate(s) for an https:// base")
	maxEntries := fs.Int64("max-entries", defaultMaxEntries, "refuse larger logs")
	if err := parseFlags(fs, args, "vkey", "base"); err != nil {
		return nil, err
	}
	src, err := newFetcher(*base, *cacert)
	if err != nil {
		return nil, err
	}
	msg, err := src.get("checkpoint", maxNoteBytes)
	if err != nil {
		return nil, fail("checkpoint: %v", err)
	}
	_, c, err := openCheckpoint(*vkey, msg)
	if err != nil {
		return nil, err
	}
	if c.Size > *maxEntries {
		return nil, fail("log has %d entries, more than --max-entries %d", c.Size, *maxEntries)
	}
	if err := checkEntries(src, c); err != nil {
		return nil, err
	}
	return map[string]any{"origin": c.Origin, "size": c.Size, "root": c.RootB64, "entries": c.Size}, nil
}

// checkEntries checks every entry of every bundle against the tree the checkpoint commits to.
func checkEntries(src fetcher, c checkpoint) error {
	if c.Size == 0 {
		if c.Root != tlog.Hash(sha256.Sum256(nil)) {
			return fail("an empty log's root must be SHA-256 of nothing")
		}
		return nil
	}
	hashes := tlog.TileHashReader(tlog.Tree{N: c.Size, Hash: c.Root},
		&tileReader{src: src, cache: map[tlog.Tile][]byte{}})
	for k := int64(0); k*tileWidth < c.Size; k++ {
		entries, err := readBundle(src, k, c.Size)
		if err != nil {
			return err
		}
		indexes := make([]int64, len(entries))
		for i := range entries {
			indexes[i] = tlog.StoredHashIndex(0, k*tileWidth+int64(i))
		}
		stored, err := hashes.ReadHashes(indexes)
		if err != nil {
			return fail("tiles do not agree with the checkpoint: %v", err)
		}
		for i, entry := range entries {
			if tlog.RecordHash(entry) != stored[i] {
				return fail("entry %d does not match the tree's leaf hash", k*tileWidth+int64(i))
			}
		}
	}
	return nil
}

// ---- gen: vectors for the Python side ----------------------------------------------------

type memLog struct{ hashes []tlog.Hash }

func (m *memLog) ReadHashes(indexes []int64) ([]tlog.Hash, error) {
	out := make([]tlog.Hash, len(indexes))
	for i, x := range indexes {
		if x < 0 || x >= int64(len(m.hashes)) {
			return nil, fmt.Errorf("hash %d not stored", x)
		}
		out[i] = m.hashes[x]
	}
	return out, nil
}

// genEntry is entry i of the deterministic log: variable length, derived from the seed.
func genEntry(seed []byte, i int64) []byte {
	var ib [8]byte
	binary.BigEndian.PutUint64(ib[:], uint64(i))
	d := sha256.Sum256(append(append([]byte("entry"), seed...), ib[:]...))
	return []byte(fmt.Sprintf(`{"id":%d,"value":"%x"}`, i+1, d[:1+i%24]))
}

// genSigner derives the log's note signer and verifier key from the seed.
func genSigner(seed []byte, origin string) (note.Signer, string, error) {
	keySeed := sha256.Sum256(append([]byte("key"), seed...))
	public := ed25519.NewKeyFromSeed(keySeed[:]).Public().(ed25519.PublicKey)
	vkey, err := note.NewEd25519VerifierKey(origin, public)
	if err != nil {
		return nil, "", err
	}
	id := vkey[len(origin)+1 : len(origin)+9]
	skey := fmt.Sprintf("PRIVATE+KEY+%s+%s+%s", origin, id,
		base64.StdEncoding.EncodeToString(append([]byte{1}, keySeed[:]...)))
	signer, err := note.NewSigner(skey)
	return signer, vkey, err
}

type generator struct {
	out    string
	origin string
	signer note.Signer
	log    memLog
}

func (g *generator) write(rel string, data []byte) error {
	path := filepath.Join(g.out, filepath.FromSlash(rel))
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	return os.WriteFile(path, data, 0o644)
}

// signedCheckpoint signs the checkpoint of the first `size` entries.
func (g *generator) signedCheckpoint(size int64) ([]byte, tlog.Hash, error) {
	root, err := tlog.TreeHash(size, &g.log)
	if err != nil {
		return nil, root, err
	}
	text := fmt.Sprintf("%s\n%d\n%s\n", g.origin, size, base64.StdEncoding.EncodeToString(root[:]))
	msg, err := note.Sign(&note.Note{Text: text}, g.signer)
	return msg, root, err
}

func formatProof(proof []tlog.Hash) []byte {
	var b bytes.Buffer
	for _, h := range proof {
		b.WriteString(base64.StdEncoding.EncodeToString(h[:]) + "\n")
	}
	return b.Bytes()
}

// pick returns the sorted distinct candidates in [lo, hi].
func pick(lo, hi int64, candidates ...int64) []int64 {
	seen := map[int64]bool{}
	var out []int64
	for _, c := range candidates {
		if c >= lo && c <= hi && !seen[c] {
			seen[c] = true
			out = append(out, c)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i] < out[j] })
	return out
}

func cmdGen(args []string) (any, error) {
	fs := flag.NewFlagSet("gen", flag.ContinueOnError)
	n := fs.Int64("n", 0, "number of entries (1 or more)")
	seedHex := fs.String("seed", "", "hex seed of the entries and the key")
	origin := fs.String("origin", "", "checkpoint origin (the key's name)")
	out := fs.String("out", "", "output directory")
	if err := parseFlags(fs, args, "seed", "origin", "out"); err != nil {
		return nil, err
	}
	seed, err := hex.DecodeString(*seedHex)
	if err != nil || len(seed) == 0 {
		return nil, usage("--seed must be non-empty hex")
	}
	if *n < 1 || *n > defaultMaxEntries {
		return nil, usage("--n must be between 1 and %d", defaultMaxEntries)
	}
	signer, vkey, err := genSigner(seed, *origin)
	if err != nil {
		return nil, usage("bad --origin: %v", err)
	}
	g := &generator{out: *out, origin: *origin, signer: signer}
	manifest, err := g.run(seed, *n, vkey)
	if err != nil {
		return nil, fail("gen: %v", err)
	}
	return manifest, nil
}

func (g *generator) run(seed []byte, n int64, vkey string) (map[string]any, error) {
	entries := make([][]byte, n)
	for i := int64(0); i < n; i++ {
		entries[i] = genEntry(seed, i)
		stored, err := tlog.StoredHashes(i, entries[i], &g.log)
		if err != nil {
			return nil, err
		}
		g.log.hashes = append(g.log.hashes, stored...)
	}
	msg, root, err := g.signedCheckpoint(n)
	if err != nil {
		return nil, err
	}
	if err := g.write("checkpoint", msg); err != nil {
		return nil, err
	}
	if err := g.write("vkey", []byte(vkey+"\n")); err != nil {
		return nil, err
	}
	inclusion, err := g.writeInclusion(entries)
	if err != nil {
		return nil, err
	}
	consistency, err := g.writeConsistency(n)
	if err != nil {
		return nil, err
	}
	if err := g.writeTiles(entries, msg); err != nil {
		return nil, err
	}
	manifest := map[string]any{
		"origin": g.origin, "size": n, "root": base64.StdEncoding.EncodeToString(root[:]),
		"vkey": vkey, "inclusion": inclusion, "consistency": consistency,
	}
	data, _ := json.MarshalIndent(manifest, "", "  ")
	return manifest, g.write("vectors.json", append(data, '\n'))
}

// writeInclusion writes entries/<i> and proofs/incl-<i> for a few leaf indexes.
func (g *generator) writeInclusion(entries [][]byte) ([]int64, error) {
	n := int64(len(entries))
	indexes := pick(0, n-1, 0, 1, n/3, n/2, n-2, n-1)
	for _, i := range indexes {
		proof, err := tlog.ProveRecord(n, i, &g.log)
		if err != nil {
			return nil, err
		}
		if err := g.write(fmt.Sprintf("entries/%d", i), entries[i]); err != nil {
			return nil, err
		}
		if err := g.write(fmt.Sprintf("proofs/incl-%d", i), formatProof(proof)); err != nil {
			return nil, err
		}
	}
	return indexes, nil
}

// writeConsistency writes old-<m> (a signed checkpoint of size m) and proofs/cons-<m> (from
// m to the full size) for a few sizes m.
func (g *generator) writeConsistency(n int64) ([]int64, error) {
	sizes := pick(1, n, 1, 2, n/3, n/2, n-1, n)
	for _, m := range sizes {
		old, _, err := g.signedCheckpoint(m)
		if err != nil {
			return nil, err
		}
		proof, err := tlog.ProveTree(n, m, &g.log)
		if err != nil {
			return nil, err
		}
		if err := g.write(fmt.Sprintf("old-%d", m), old); err != nil {
			return nil, err
		}
		if err := g.write(fmt.Sprintf("proofs/cons-%d", m), formatProof(proof)); err != nil {
			return nil, err
		}
	}
	return sizes, nil
}

// writeTiles publishes the tree as C2SP tlog-tiles under log/: checkpoint, hash tiles,
// entry bundles.
func (g *generator) writeTiles(entries [][]byte, checkpointNote []byte) error {
	n := int64(len(entries))
	for _, t := range tlog.NewTiles(tileHeight, 0, n) {
		if t.W != tileWidth && int64(t.N*tileWidth+int64(t.W)) != n>>(uint(t.L)*tileHeight) {
			continue // an intermediate partial tile of a smaller tree
		}
		data, err := tlog.ReadTileData(t, &g.log)
		if err != nil {
			return err
		}
		if err := g.write("log/"+c2spPath(t), data); err != nil {
			return err
		}
	}
	for k := int64(0); k*tileWidth < n; k++ {
		end := (k + 1) * tileWidth
		if end > n {
			end = n
		}
		var bundle bytes.Buffer
		for _, e := range entries[k*tileWidth : end] {
			var l [2]byte
			binary.BigEndian.PutUint16(l[:], uint16(len(e)))
			bundle.Write(l[:])
			bundle.Write(e)
		}
		t := tlog.Tile{H: tileHeight, L: -1, N: k, W: int(end - k*tileWidth)}
		rel := "tile/entries/" + strings.TrimPrefix(t.Path(), fmt.Sprintf("tile/%d/data/", tileHeight))
		if err := g.write("log/"+rel, bundle.Bytes()); err != nil {
			return err
		}
	}
	return g.write("log/checkpoint", checkpointNote)
}
