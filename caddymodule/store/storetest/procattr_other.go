//go:build !linux

package storetest

import "syscall"

// dieWithParent has no portable equivalent outside Linux; t.Cleanup still
// kills the server on a normal exit.
func dieWithParent() *syscall.SysProcAttr { return nil }
