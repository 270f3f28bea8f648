package main

// Reading a published log (C2SP tlog-tiles) and checking every entry against the checkpoint.

import (
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/binary"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/mod/sumdb/tlog"
)

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
	var witnesses witnessFlag
	witnesses.register(fs)
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
	n, c, err := openCheckpoint(*vkey, msg)
	if err != nil {
		return nil, err
	}
	found, err := witnesses.check(n)
	if err != nil {
		return nil, err
	}
	if c.Size > *maxEntries {
		return nil, fail("log has %d entries, more than --max-entries %d", c.Size, *maxEntries)
	}
	if err := checkEntries(src, c); err != nil {
		return nil, err
	}
	return map[string]any{
		"origin": c.Origin, "size": c.Size, "root": c.RootB64, "entries": c.Size, "witnesses": found,
	}, nil
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
