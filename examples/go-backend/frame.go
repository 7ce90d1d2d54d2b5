package main

// The wire format (docs/PROTOCOL.md section 1): a 12-byte length line, then exactly N bytes of payload.

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
)

const lineLen = 12

// errBadFrame marks a frame after which the stream cannot be resynchronised (section 3.5).
var errBadFrame = errors.New("bad frame")

// parseLength reads N from a length line: padding of spaces and zeros in any mix, then digits, then CR LF.
func parseLength(line []byte, max int64) (int64, error) {
	if line[10] != '\r' || line[11] != '\n' {
		return 0, fmt.Errorf("%w: length line does not end in \\r\\n", errBadFrame)
	}
	col := 0
	sawZero := false
	for col < 10 && (line[col] == ' ' || line[col] == '0') {
		sawZero = sawZero || line[col] == '0'
		col++
	}
	if col == 10 && !sawZero {
		return 0, fmt.Errorf("%w: length line holds no number", errBadFrame)
	}
	var n int64
	for ; col < 10; col++ {
		c := line[col]
		if c < '0' || c > '9' {
			return 0, fmt.Errorf("%w: length line has the non-digit byte 0x%02x in column %d", errBadFrame, c, col)
		}
		n = n*10 + int64(c-'0')
	}
	// Checked before a single payload byte is read: a line announcing 9999999999 bytes costs nothing.
	if n > max {
		return 0, fmt.Errorf("%w: frame of %d bytes is larger than the maximum of %d bytes", errBadFrame, n, max)
	}
	return n, nil
}

// readFrame reads one frame. io.EOF means the peer closed cleanly between frames.
func readFrame(r *bufio.Reader, max int64) ([]byte, error) {
	line := make([]byte, lineLen)
	got, err := io.ReadFull(r, line)
	if got == 0 && err == io.EOF {
		return nil, io.EOF
	}
	if err == io.ErrUnexpectedEOF {
		return nil, fmt.Errorf("%w: stream ended %d bytes into the length line", errBadFrame, got)
	}
	if err != nil {
		return nil, err
	}
	n, err := parseLength(line, max)
	if err != nil {
		return nil, err
	}
	// The buffer grows as bytes arrive rather than trusting N up front.
	var payload bytes.Buffer
	copied, err := io.CopyN(&payload, r, n)
	if err == io.EOF {
		return nil, fmt.Errorf("%w: stream ended %d bytes into a %d-byte payload", errBadFrame, copied, n)
	}
	if err != nil {
		return nil, err
	}
	return payload.Bytes(), nil
}

// bufferedFrame reports whether a whole frame already sits in r's buffer, so that it can be read without
// touching the socket (used while shutting down: what was read gets answered, nothing more is read).
func bufferedFrame(r *bufio.Reader, max int64) bool {
	if r.Buffered() < lineLen {
		return false
	}
	line, _ := r.Peek(lineLen)
	n, err := parseLength(line, max)
	if err != nil {
		return true // a bad line is answered too, from the buffer alone
	}
	return int64(r.Buffered()) >= lineLen+n
}

// frame prepends the length line, space-padded as printf("%10d\r\n") writes it.
func frame(payload []byte) []byte {
	out := make([]byte, 0, lineLen+len(payload))
	out = append(out, fmt.Sprintf("%10d\r\n", len(payload))...)
	return append(out, payload...)
}
