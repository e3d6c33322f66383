package seccomp

import (
	"encoding/binary"
	"fmt"
)

// A small classic-BPF interpreter for seccomp filters, so Check can run the
// very program libseccomp generates instead of guessing what libseccomp makes
// of overlapping rules.

// seccompData is the kernel's struct seccomp_data.
type seccompData struct {
	nr   int32
	arch uint32
	ip   uint64
	args [6]uint64
}

// bytes lays the struct out as the kernel does, in the byte order of the
// architectures clawrun supports (all little-endian).
func (d seccompData) bytes() []byte {
	b := make([]byte, 64)
	binary.LittleEndian.PutUint32(b[0:], uint32(d.nr))
	binary.LittleEndian.PutUint32(b[4:], d.arch)
	binary.LittleEndian.PutUint64(b[8:], d.ip)
	for i, a := range d.args {
		binary.LittleEndian.PutUint64(b[16+8*i:], a)
	}
	return b
}

// sockFilter is one struct sock_filter.
type sockFilter struct {
	code   uint16
	jt, jf uint8
	k      uint32
}

// parseBPF reads a program as libseccomp exports it (native byte order).
func parseBPF(raw []byte) ([]sockFilter, error) {
	if len(raw) == 0 || len(raw)%8 != 0 {
		return nil, fmt.Errorf("BPF program of %d bytes: want a non-empty multiple of 8", len(raw))
	}
	prog := make([]sockFilter, len(raw)/8)
	for i := range prog {
		b := raw[8*i:]
		prog[i] = sockFilter{
			code: binary.LittleEndian.Uint16(b[0:]),
			jt:   b[2], jf: b[3],
			k: binary.LittleEndian.Uint32(b[4:]),
		}
	}
	return prog, nil
}

// BPF opcode parts (linux/bpf_common.h).
const (
	bpfLD, bpfLDX, bpfST, bpfSTX, bpfALU, bpfJMP, bpfRET, bpfMISC = 0x00, 0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07

	bpfW, bpfABS, bpfIMM, bpfMEM, bpfLEN = 0x00, 0x20, 0x00, 0x60, 0x80
	bpfK, bpfX, bpfA                     = 0x00, 0x08, 0x10

	bpfADD, bpfSUB, bpfMUL, bpfDIV, bpfOR, bpfAND, bpfLSH, bpfRSH, bpfNEG, bpfMOD, bpfXOR = 0x00, 0x10, 0x20, 0x30, 0x40, 0x50, 0x60, 0x70, 0x80, 0x90, 0xa0

	bpfJA, bpfJEQ, bpfJGT, bpfJGE, bpfJSET = 0x00, 0x10, 0x20, 0x30, 0x40

	bpfTAX, bpfTXA = 0x00, 0x80
)

// runBPF runs a seccomp program on data and returns its verdict, with the
// kernel's checker rules: only 32-bit loads from seccomp_data, forward jumps.
func runBPF(prog []sockFilter, data []byte) (uint32, error) {
	var a, x uint32
	var mem [16]uint32
	for pc := 0; pc < len(prog); pc++ {
		in := prog[pc]
		src := x
		if in.code&bpfX == 0 {
			src = in.k
		}
		switch in.code & 0x07 {
		case bpfLD, bpfLDX:
			var v uint32
			switch in.code & 0xe0 {
			case bpfABS:
				if in.code&0x18 != bpfW || in.k%4 != 0 || int(in.k)+4 > len(data) {
					return 0, fmt.Errorf("instruction %d: load of %d at %d outside seccomp_data", pc, in.code&0x18, in.k)
				}
				v = binary.LittleEndian.Uint32(data[in.k:])
			case bpfIMM:
				v = in.k
			case bpfMEM:
				if in.k >= 16 {
					return 0, fmt.Errorf("instruction %d: scratch slot %d", pc, in.k)
				}
				v = mem[in.k]
			case bpfLEN:
				v = uint32(len(data))
			default:
				return 0, fmt.Errorf("instruction %d: unsupported load %#x", pc, in.code)
			}
			if in.code&0x07 == bpfLD {
				a = v
			} else {
				x = v
			}
		case bpfST, bpfSTX:
			if in.k >= 16 {
				return 0, fmt.Errorf("instruction %d: scratch slot %d", pc, in.k)
			}
			if in.code&0x07 == bpfST {
				mem[in.k] = a
			} else {
				mem[in.k] = x
			}
		case bpfALU:
			switch in.code & 0xf0 {
			case bpfADD:
				a += src
			case bpfSUB:
				a -= src
			case bpfMUL:
				a *= src
			case bpfDIV, bpfMOD:
				if src == 0 {
					return 0, nil // the kernel returns 0 (kill) on division by zero
				}
				if in.code&0xf0 == bpfDIV {
					a /= src
				} else {
					a %= src
				}
			case bpfOR:
				a |= src
			case bpfAND:
				a &= src
			case bpfXOR:
				a ^= src
			case bpfLSH:
				a <<= src & 31
			case bpfRSH:
				a >>= src & 31
			case bpfNEG:
				a = -a
			default:
				return 0, fmt.Errorf("instruction %d: unsupported ALU op %#x", pc, in.code)
			}
		case bpfJMP:
			var taken bool
			switch in.code & 0xf0 {
			case bpfJA:
				pc += int(in.k)
				continue
			case bpfJEQ:
				taken = a == src
			case bpfJGT:
				taken = a > src
			case bpfJGE:
				taken = a >= src
			case bpfJSET:
				taken = a&src != 0
			default:
				return 0, fmt.Errorf("instruction %d: unsupported jump %#x", pc, in.code)
			}
			if taken {
				pc += int(in.jt)
			} else {
				pc += int(in.jf)
			}
		case bpfRET:
			switch in.code & 0x18 {
			case bpfK:
				return in.k, nil
			case bpfA:
				return a, nil
			}
			return 0, fmt.Errorf("instruction %d: unsupported return %#x", pc, in.code)
		case bpfMISC:
			if in.code&0xf8 == bpfTXA {
				a = x
			} else {
				x = a
			}
		}
	}
	return 0, fmt.Errorf("program ran past its end")
}

// Seccomp return values (linux/seccomp.h).
const (
	retKillProcess = 0x80000000
	retKillThread  = 0x00000000
	retTrap        = 0x00030000
	retErrno       = 0x00050000
	retUserNotif   = 0x7fc00000
	retTrace       = 0x7ff00000
	retLog         = 0x7ffc0000
	retAllow       = 0x7fff0000
	retActionFull  = 0xffff0000
	retData        = 0x0000ffff
)
