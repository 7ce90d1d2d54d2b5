package main

// Requests and replies (docs/PROTOCOL.md sections 2 and 5): parse the envelope, call the method, and turn
// every failure into an error reply rather than a dropped connection.

import (
	"bytes"
	"encoding/json"
	"fmt"
	"unicode/utf8"
)

// methodError is an error reply: {"error":{"code":…,"message":…}}.
type methodError struct {
	Code    string `json:"code"`
	Message string `json:"message"`
}

func (e *methodError) Error() string { return e.Code + ": " + e.Message }

func badRequest(format string, args ...interface{}) *methodError {
	return &methodError{Code: "bad_request", Message: fmt.Sprintf(format, args...)}
}

// A method takes the request's data (JSON null when absent) and returns a reply value or an error.
type method func(data json.RawMessage) (interface{}, error)

// handle answers one request payload with one reply payload; it never fails.
func handle(methods map[string]method, payload []byte) (reply []byte) {
	defer func() {
		if p := recover(); p != nil {
			reply = encode(map[string]interface{}{"error": &methodError{Code: "handler_error", Message: fmt.Sprint(p)}})
		}
	}()
	value, err := call(methods, payload)
	if err != nil {
		e, ok := err.(*methodError)
		if !ok {
			e = &methodError{Code: "handler_error", Message: err.Error()}
		}
		return encode(map[string]interface{}{"error": e})
	}
	return encode(value)
}

func call(methods map[string]method, payload []byte) (interface{}, error) {
	// Go's decoder would quietly replace bad UTF-8; the protocol says the payload is UTF-8 JSON.
	if !utf8.Valid(payload) {
		return nil, badRequest("the payload is not UTF-8")
	}
	var envelope map[string]json.RawMessage
	if err := json.Unmarshal(payload, &envelope); err != nil || envelope == nil {
		return nil, badRequest("the payload is not a JSON object")
	}
	var head map[string]json.RawMessage
	if err := json.Unmarshal(envelope["head"], &head); err != nil || head == nil {
		return nil, badRequest("the request has no object \"head\"")
	}
	var name string
	raw := head["method"]
	if len(raw) == 0 || raw[0] != '"' || json.Unmarshal(raw, &name) != nil {
		return nil, badRequest("the request has no string \"head.method\"")
	}
	run, ok := methods[name]
	if !ok {
		// Also the answer to _pipeline: this backend replies one request at a time, in order.
		return nil, &methodError{Code: "method_not_found", Message: fmt.Sprintf("no method named '%s'", name)}
	}
	data, ok := envelope["data"]
	if !ok {
		data = json.RawMessage("null")
	}
	return run(data)
}

// encode writes a reply compactly, leaving <, > and & as they are.
func encode(value interface{}) []byte {
	var out bytes.Buffer
	enc := json.NewEncoder(&out)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(value); err != nil {
		return []byte(`{"error":{"code":"handler_error","message":"the reply is not JSON"}}`)
	}
	return bytes.TrimSuffix(out.Bytes(), []byte("\n"))
}

// decodeData reads a method's data into its struct; a wrong shape is the caller's bad_request.
func decodeData(data json.RawMessage, into interface{}) error {
	if err := json.Unmarshal(data, into); err != nil {
		return badRequest("data does not fit the method: %v", err)
	}
	return nil
}
