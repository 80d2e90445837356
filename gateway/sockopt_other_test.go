//go:build !unix

package gateway

import "syscall"

func smallReceiveBuffer() func(network, address string, rc syscall.RawConn) error { return nil }
