package main

// gen: deterministic vectors (a log, its signed checkpoints, proofs and tiles) for the Python side.

import (
	"bytes"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"
)

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
