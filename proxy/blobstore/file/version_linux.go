package file

import (
	"fmt"
	"io/fs"
	"syscall"
)

// version names one state of a file: it changes when the file is replaced (device, inode) or
// written (size, modification and change times; the change time cannot be set back).
func version(info fs.FileInfo) string {
	st, ok := info.Sys().(*syscall.Stat_t)
	if !ok {
		return ""
	}
	return fmt.Sprintf("%d:%d:%d:%d.%d:%d.%d", st.Dev, st.Ino, info.Size(),
		st.Mtim.Sec, st.Mtim.Nsec, st.Ctim.Sec, st.Ctim.Nsec)
}
