//go:build unix

package gateway

import "syscall"

// smallReceiveBuffer returns a net.Dialer Control function that shrinks the
// socket's receive buffer to the kernel's minimum.
func smallReceiveBuffer() func(network, address string, rc syscall.RawConn) error {
	return func(_, _ string, rc syscall.RawConn) error {
		return rc.Control(func(fd uintptr) {
			_ = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, 2048)
		})
	}
}
