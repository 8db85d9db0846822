package file

import (
	"fmt"
	"io/fs"
	"syscall"
	"time"
)

// version names one state of a file: it changes when the file is replaced (device, inode) or
// written through the file system (size, modification and change times; the change time
// cannot be set back from user space). changed is the later of the two times.
func version(info fs.FileInfo) (id string, changed time.Time) {
	st, ok := info.Sys().(*syscall.Stat_t)
	if !ok {
		return "", time.Time{}
	}
	mtime, ctime := time.Unix(st.Mtim.Sec, st.Mtim.Nsec), time.Unix(st.Ctim.Sec, st.Ctim.Nsec)
	id = fmt.Sprintf("%d:%d:%d:%d.%d:%d.%d", st.Dev, st.Ino, info.Size(),
		st.Mtim.Sec, st.Mtim.Nsec, st.Ctim.Sec, st.Ctim.Nsec)
	if mtime.After(ctime) {
		return id, mtime
	}
	return id, ctime
}
