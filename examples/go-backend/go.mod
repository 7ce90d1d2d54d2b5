module modproxy.example/go-backend

go 1.19
