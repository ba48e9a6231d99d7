package auth

import (
	"errors"
	"fmt"
)

// LineError is what LoadPasswords and LoadACL return for a line they cannot
// use. Its message never contains a password hash.
type LineError struct {
	Path string // the file, as given to Load
	Line int    // 1-based
	Msg  string // what is wrong
}

func (e *LineError) Error() string {
	return fmt.Sprintf("%s:%d: %s", e.Path, e.Line, e.Msg)
}

// ErrInvalidUsername is returned by SetPassword for a user name the password
// file cannot hold.
var ErrInvalidUsername = errors.New("auth: invalid user name")

// maxLine bounds one line of a password or ACL file. MQTT strings are at most
// 65535 bytes, so a longer line cannot be a valid user name or topic filter.
const maxLine = 1 << 20
