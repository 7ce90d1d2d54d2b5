package main

// The application: an in-memory todo list with the same methods and errors as the Rust, Python and Node
// examples.

import (
	"encoding/json"
	"fmt"
	"strings"
	"sync"
	"unicode/utf8"
)

const maxTitle = 200

type todo struct {
	ID    int64  `json:"id"`
	Title string `json:"title"`
	Done  bool   `json:"done"`
}

// todoList is shared by every connection's goroutine, hence the lock.
type todoList struct {
	mu     sync.Mutex
	todos  []*todo
	lastID int64
}

func (l *todoList) methods() map[string]method {
	return map[string]method{
		"_ping": func(json.RawMessage) (interface{}, error) { return map[string]bool{"pong": true}, nil },
		"add":   l.add,
		"list":  l.list,
		"done":  l.done,
	}
}

func (l *todoList) add(data json.RawMessage) (interface{}, error) {
	var args struct {
		Title *string `json:"title"`
	}
	if string(data) != "null" {
		if err := decodeData(data, &args); err != nil {
			return nil, err
		}
	}
	title := ""
	if args.Title != nil {
		title = strings.TrimSpace(*args.Title)
	}
	if title == "" {
		return nil, &methodError{Code: "invalid", Message: "the title is empty; give the todo a title"}
	}
	if n := utf8.RuneCountInString(title); n > maxTitle {
		return nil, &methodError{Code: "invalid", Message: fmt.Sprintf("the title has %d characters; the most is %d", n, maxTitle)}
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	l.lastID++
	t := &todo{ID: l.lastID, Title: title}
	l.todos = append(l.todos, t)
	return *t, nil
}

func (l *todoList) list(json.RawMessage) (interface{}, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	page := make([]todo, 0, len(l.todos))
	for _, t := range l.todos {
		page = append(page, *t)
	}
	return map[string]interface{}{"todos": page}, nil
}

func (l *todoList) done(data json.RawMessage) (interface{}, error) {
	var args struct {
		ID *int64 `json:"id"`
	}
	if err := decodeData(data, &args); err != nil {
		return nil, err
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, t := range l.todos {
		if args.ID != nil && *args.ID == t.ID {
			t.Done = true
			return *t, nil
		}
	}
	if args.ID == nil {
		return nil, &methodError{Code: "not_found", Message: "no todo has id null"}
	}
	return nil, &methodError{Code: "not_found", Message: fmt.Sprintf("no todo has id %d", *args.ID)}
}
