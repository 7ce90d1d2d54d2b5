// A todo backend for Module Proxy in Go, with the standard library only, written from docs/PROTOCOL.md
// alone: no SDK. It serves the module `todo-go` in conf/default.toml.
//
//	go run . [HOST:PORT]
//
// The address comes from the first argument, else MODPROXY_LISTEN, else 127.0.0.1:21233.
//
// Methods, the same as the other examples:
//
//	add  {"title": "…"}  → the new todo {id, title, done}; `invalid` if the title is empty or over 200 characters
//	list                 → {"todos": [...]}
//	done {"id": n}       → the todo, now done; `not_found` if no todo has that id
//	_ping                → {"pong": true}
package main

import (
	"bufio"
	"errors"
	"log"
	"net"
	"os"
	"os/signal"
	"sync"
	"syscall"
	"time"
)

const (
	defaultAddr = "127.0.0.1:21233"
	// The largest request accepted, inclusive (section 1.4): the SDKs' default.
	maxRequest = 64 << 20
	// A connection that sends nothing for this long is closed (section 3.3).
	idleTimeout = 5 * time.Minute
	// How long a shutdown waits for requests in flight (section 3.7).
	shutdownGrace = 10 * time.Second
)

func main() {
	addr := defaultAddr
	if len(os.Args) > 1 {
		addr = os.Args[1]
	} else if env := os.Getenv("MODPROXY_LISTEN"); env != "" {
		addr = env
	}
	listener, err := net.Listen("tcp", addr)
	if err != nil {
		log.Fatalf("go backend: %v", err)
	}
	log.Printf("go backend listening on %s", listener.Addr())

	s := &server{methods: (&todoList{}).methods(), conns: map[net.Conn]struct{}{}}
	signals := make(chan os.Signal, 1)
	signal.Notify(signals, syscall.SIGTERM, syscall.SIGINT)
	go func() {
		sig := <-signals
		log.Printf("%v: finishing the requests in hand", sig)
		listener.Close() // stop accepting
		s.stop()         // stop reading
	}()

	for {
		conn, err := listener.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				break
			}
			log.Printf("accept: %v", err)
			time.Sleep(100 * time.Millisecond)
			continue
		}
		// Go's TCP connections have TCP_NODELAY on by default, as section 3.1 asks.
		s.serve(conn)
	}
	finished := make(chan struct{})
	go func() { s.wg.Wait(); close(finished) }()
	select {
	case <-finished:
	case <-time.After(shutdownGrace):
		log.Printf("shutdown grace elapsed with requests still in flight")
	}
}

// server tracks live connections so that a shutdown can stop them reading.
type server struct {
	methods  map[string]method
	mu       sync.Mutex
	stopping bool
	conns    map[net.Conn]struct{}
	wg       sync.WaitGroup
}

func (s *server) serve(conn net.Conn) {
	s.mu.Lock()
	if s.stopping {
		s.mu.Unlock()
		conn.Close()
		return
	}
	s.conns[conn] = struct{}{}
	s.wg.Add(1)
	s.mu.Unlock()
	go func() {
		defer s.wg.Done()
		defer func() {
			s.mu.Lock()
			delete(s.conns, conn)
			s.mu.Unlock()
			conn.Close()
		}()
		s.connection(conn)
	}()
}

// stop makes every connection's next socket read return at once.
func (s *server) stop() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.stopping = true
	for conn := range s.conns {
		conn.SetReadDeadline(time.Unix(1, 0))
	}
}

// mayRead sets the idle deadline for the next read, unless the server is stopping. Under the lock, so that
// a stop cannot slip in between the check and the deadline.
func (s *server) mayRead(conn net.Conn) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.stopping {
		return false
	}
	conn.SetReadDeadline(time.Now().Add(idleTimeout))
	return true
}

// connection answers one request at a time, so replies go out in the order the requests came
// (section 4.1); other connections run in their own goroutines (section 3.2).
func (s *server) connection(conn net.Conn) {
	r := bufio.NewReaderSize(conn, 64<<10)
	for {
		// Once stopping, only frames already read into the buffer are answered (section 3.7).
		if !s.mayRead(conn) && !bufferedFrame(r, maxRequest) {
			return
		}
		payload, err := readFrame(r, maxRequest)
		if err != nil {
			if errors.Is(err, errBadFrame) {
				// Section 3.5: one bad_request reply that names the problem, then close.
				reply := encode(map[string]interface{}{"error": badRequest("bad frame: %v", err)})
				conn.Write(frame(reply))
			}
			return // end of stream, idle timeout, stop, or a failed read
		}
		if _, err := conn.Write(frame(handle(s.methods, payload))); err != nil {
			return // a failed write ends this connection only
		}
	}
}
