package storetest

import "syscall"

// dieWithParent makes the kernel kill redis-server when the test binary
// dies, so a crashed or timed-out test run leaves no server behind.
func dieWithParent() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
