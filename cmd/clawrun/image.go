package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"text/tabwriter"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"github.com/spf13/cobra"

	"github.com/clawrun/clawrun/policy"
	"github.com/clawrun/clawrun/rootfs"
	"github.com/clawrun/clawrun/runtime"
)

// imageStore opens the image stores under the data directory: unpacker
// bases and, per container id map, mapped ones (runtime.Images).
func (g *globals) imageStore() (*runtime.Images, error) {
	if err := os.MkdirAll(g.data, 0o700); err != nil {
		return nil, fmt.Errorf("create %s: %w", g.data, err)
	}
	return &runtime.Images{Dir: filepath.Join(g.data, "images"), Host: runtime.CurrentHost(), Progress: os.Stderr}, nil
}

// resolveImage turns an image agent's plan into one with a root
// filesystem: the image is taken from the store (pulled or unpacked when
// missing) and its config fills in what the agent file leaves out. Plans
// of directory agents are returned as they are.
func resolveImage(g *globals, p *policy.Plan) (*policy.Plan, error) {
	return resolveImageFor(g, p, nil)
}

// resolveImageFor is resolveImage taking plat from image indexes (nil:
// linux/<host arch>). The base stays leased until this process exits, so
// a concurrent prune or rm keeps it until the container exists (a run),
// or for as long as its agents are served (serve): see rootfs.Lease.
func resolveImageFor(g *globals, p *policy.Plan, plat *v1.Platform) (*policy.Plan, error) {
	if p.Image == "" {
		return p, nil
	}
	st, err := g.imageStore()
	if err != nil {
		return nil, err
	}
	st.Platform = plat
	resolve := func(m *rootfs.IDMap) (*rootfs.Image, error) {
		img, l, err := rootfs.ResolveLeased(p.Image, func() (*rootfs.Image, error) {
			return st.Resolve(context.Background(), p.Image, m)
		})
		if err != nil {
			return nil, fmt.Errorf("agent %s: %w", p.Name, err)
		}
		g.leases = append(g.leases, l)
		return img, nil
	}
	// The base must fit the agent's id map, which depends on the user the
	// image's config may name (and its /etc/passwd, for a name): resolve
	// with the map the agent file alone gives, then again if the image's
	// user changes it. A plan whose identity fails gets unpacker bases;
	// Prepare reports why it fails.
	guess, _ := runtime.ResolveIdentity(p, st.Host)
	first := guess.ImageMap()
	// A base of the image unpacked before, for any map, already says whom
	// it runs as: then the first resolve takes the right map, and a run
	// does not unpack (or fetch) the image for a map it will not use.
	if seen, err := st.Get(p.Image, first); err == nil {
		if hp, err := withImageConfig(p, seen); err == nil {
			if hid, err := runtime.ResolveIdentity(hp, st.Host); err == nil {
				first = hid.ImageMap()
			}
		}
	}
	img, err := resolve(first)
	if err != nil {
		return nil, err
	}
	np, err := withImageConfig(p, img)
	if err != nil {
		return nil, err
	}
	id, _ := runtime.ResolveIdentity(np, st.Host)
	if !rootfs.SameMap(id.ImageMap(), first) {
		if first != nil {
			// That base was unpacked only to read the image's user: the
			// reference leaves its store, so that prune can take the base
			// (a full copy) once no run or container holds it.
			if _, _, err := st.Untag(p.Image, first, func() ([]string, error) { return imagesInUse(g) }); err != nil {
				fmt.Fprintf(os.Stderr, "clawrun: agent %s: %v\n", p.Name, err)
			}
		}
		if img, err = resolve(id.ImageMap()); err != nil {
			return nil, err
		}
		return withImageConfig(p, img)
	}
	return np, nil
}

// withImageConfig runs p from img, whose config fills in what the agent
// file leaves out.
func withImageConfig(p *policy.Plan, img *rootfs.Image) (*policy.Plan, error) {
	c := img.Config()
	d := policy.ImageDefaults{Entrypoint: c.Entrypoint, Cmd: c.Cmd, Env: c.Env, WorkingDir: c.WorkingDir}
	if c.User != "" && !p.UserSet {
		uid, gid, err := rootfs.LookupUser(img.Rootfs(), c.User)
		if err != nil {
			return nil, fmt.Errorf("agent %s: image %s: %w: set user: in the agent file", p.Name, p.Image, err)
		}
		d.User = &policy.User{UID: uid, GID: gid}
	}
	return p.WithImage(img.Rootfs(), img.ID, d)
}

// imagesInUse lists the root filesystems of this user's containers, which
// rm and prune must keep. They call it once they hold the bases they may
// delete (rootfs.InUse).
func imagesInUse(g *globals) ([]string, error) {
	rt, err := g.runtime()
	if err != nil {
		return nil, err
	}
	list, err := rt.List()
	if err != nil {
		return nil, err
	}
	var out []string
	for _, c := range list {
		if c.Meta != nil && c.Meta.Plan != nil && c.Meta.Plan.Rootfs != "" {
			out = append(out, c.Meta.Plan.Rootfs)
		}
	}
	return out, nil
}

func newImageCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "image",
		Short: "Pull, list and remove the images agents run from",
		Long: `Images are unpacked once, by the ID of their config, under DATA/images and
shared read-only by every agent that names them (image: in the agent file).

References:
  alpine:3.20, registry:5000/team/agent@sha256:...   a registry (credentials
                    from ~/.docker/config.json, as docker login writes them)
  oci-layout:DIR[@sha256:...]                          an OCI image layout
  docker-archive:FILE[:TAG|@sha256:ID]                 a docker save tarball
                    (TAG or ID picks one image of several)

From an image index (a multi-platform image) the linux/<host arch> image
is taken unless --platform names another.

A run pulls an image it does not have; a registry tag already pulled is used
as is until 'clawrun image pull' refreshes it. Layers are verified against
their digests and unpacked safely (see docs/images.md).

With subordinate ids a base keeps the image's file owners through the
agent's id map ("mapped", one base per map: an agent with another user or
idmap gets its own); with a single-id map every file is yours ("unpacker").
image ls --json, image inspect and clawrun inspect show which.`,
	}
	cmd.AddCommand(newImagePullCmd(g), newImageLsCmd(g), newImageRmCmd(g), newImageInspectCmd(g), newImagePruneCmd(g))
	return cmd
}

func newImagePullCmd(g *globals) *cobra.Command {
	var maxSize, platform string
	cmd := &cobra.Command{
		Use:   "pull REF",
		Short: "Fetch and unpack an image (again, for a registry tag)",
		Example: `  clawrun image pull alpine:3.20
  clawrun image pull oci-layout:./build/agent
  clawrun image pull --max-size 20G docker-archive:./big.tar
  clawrun image pull docker-archive:./images.tar:agent:v2
  clawrun image pull --platform linux/arm64 ghcr.io/team/agent:v2`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			st, err := g.imageStore()
			if err != nil {
				return err
			}
			if maxSize != "" {
				n, err := policy.ParseSize(maxSize)
				if err != nil {
					return fmt.Errorf("--max-size: %w", err)
				}
				st.MaxSize = n
			}
			if platform != "" {
				if st.Platform, err = rootfs.ParsePlatform(platform); err != nil {
					return fmt.Errorf("--platform: %w", err)
				}
			}
			img, err := st.Pull(cmd.Context(), args[0], st.DefaultImageMap())
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "%s: %s (%d layers, %s)\n", args[0], img.ID, len(img.Layers), fmtBytes(uint64(img.Size)))
			return nil
		},
	}
	cmd.Flags().StringVar(&maxSize, "max-size", "", "refuse an image that unpacks to more than this (default 8G)")
	cmd.Flags().StringVar(&platform, "platform", "", "os/arch[/variant] to take from an image index (default linux/<host arch>)")
	return cmd
}

func newImageLsCmd(g *globals) *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "ls",
		Short: "List unpacked images",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			st, err := g.imageStore()
			if err != nil {
				return err
			}
			imgs, err := st.List()
			if err != nil {
				return err
			}
			if asJSON {
				if imgs == nil {
					imgs = []*rootfs.Image{}
				}
				return writeJSON(cmd.OutOrStdout(), imgs)
			}
			tw := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 4, 2, ' ', 0)
			// One line per reference and base: an image unpacked for
			// two id maps has two bases (docs/images.md, Ownership).
			fmt.Fprintln(tw, "REFERENCE\tID\tSIZE\tUNPACKED\tOWNERSHIP")
			for _, img := range imgs {
				refs := img.Refs
				if len(refs) == 0 {
					refs = []string{"<none>"}
				}
				for _, r := range refs {
					fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", rootfs.Familiar(r), img.ShortID(), fmtBytes(uint64(img.Size)),
						img.Unpacked.Local().Format(time.DateTime), ownershipColumn(img.Ownership()))
				}
			}
			return tw.Flush()
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	return cmd
}

func newImageRmCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "rm REF|ID...",
		Short: "Remove image references, and images no reference or container uses",
		Long: `Remove a reference from the index; when no reference names the image any
more and no container uses it, its unpacked base is deleted. Given an ID,
every reference to that image goes; an image a container uses is refused.`,
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			st, err := g.imageStore()
			if err != nil {
				return err
			}
			inUse := func() ([]string, error) { return imagesInUse(g) }
			var errs []error
			for _, a := range args {
				img, removed, err := st.Remove(a, inUse)
				if err != nil {
					errs = append(errs, err)
					continue
				}
				if removed {
					fmt.Fprintf(cmd.OutOrStdout(), "removed %s (%s)\n", a, img.ID)
				} else {
					fmt.Fprintf(cmd.OutOrStdout(), "untagged %s (%s kept: still named or in use)\n", a, img.ID)
				}
			}
			return errors.Join(errs...)
		},
	}
}

func newImageInspectCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "inspect REF|ID",
		Short: "Print an unpacked image's record as JSON: ID, references, layers, config",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			st, err := g.imageStore()
			if err != nil {
				return err
			}
			img, err := st.Get(args[0], st.DefaultImageMap())
			if err != nil {
				return err
			}
			return writeJSON(cmd.OutOrStdout(), img)
		},
	}
}

func newImagePruneCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "prune",
		Short: "Delete unpacked images that no reference names and no container uses, and cached layer blobs no image lists",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			st, err := g.imageStore()
			if err != nil {
				return err
			}
			removed, err := st.Prune(func() ([]string, error) { return imagesInUse(g) })
			for _, id := range removed {
				fmt.Fprintf(cmd.OutOrStdout(), "removed %s\n", id)
			}
			if err == nil && len(removed) == 0 {
				fmt.Fprintln(cmd.OutOrStdout(), "nothing to prune")
			}
			return err
		},
	}
}

// imageLine adds the image an agent runs from to an inspect report, next
// to its rootfs, with how the base's ownership looks inside the container
// under its identity.
func imageLine(g *globals, rep *runtime.Report, p *policy.Plan, id *runtime.Identity) {
	if p == nil || p.Image == "" {
		return
	}
	lines := []runtime.Line{{Kind: "image", Value: fmt.Sprintf("%s (%s, unpacked read-only, shared)", p.Image, p.ImageID)}}
	if st, err := g.imageStore(); err == nil {
		if img, err := st.Get(p.ImageID, id.ImageMap()); err == nil && id != nil {
			lines = append(lines, runtime.Line{Kind: "ownership", Value: ownershipText(img.Ownership(), id)})
		} else if err != nil {
			lines = append(lines, runtime.Line{Kind: "ownership", Value: fmt.Sprintf("unknown: %v", err)})
		}
	}
	for i, x := range rep.Lines {
		if x.Kind == "rootfs" {
			rep.Lines = append(rep.Lines[:i+1], append(lines, rep.Lines[i+1:]...)...)
			return
		}
	}
	rep.Lines = append(lines, rep.Lines...)
}

// ownershipColumn is image ls's short form of a base's ownership: the
// mode and, for a mapped base, where the image's root lands on the host.
func ownershipColumn(o rootfs.Ownership) string {
	if o.Mode == rootfs.OwnedByMap {
		return fmt.Sprintf("mapped (image root = host %d:%d)", o.UID, o.GID)
	}
	return fmt.Sprintf("unpacker (all host %d:%d)", o.UID, o.GID)
}

// ownershipText says whom the files of a base belong to on the host and,
// through the container's map, inside it.
func ownershipText(o rootfs.Ownership, id *runtime.Identity) string {
	if o.Mode == rootfs.OwnedByMap {
		s := "mapped: " + o.String() + "; "
		if rootfs.SameMap(o.Map, id.ImageMap()) {
			return s + "this is the container's own map (subordinate ids, agent id kept as the host user), so inside every file shows the owner the image gave it"
		}
		return s + "this container's map differs, so inside files show shifted owners: run the agent again to unpack a base for its map"
	}
	uid, okU := toContainer(id.UIDMappings, o.UID)
	gid, okG := toContainer(id.GIDMappings, o.GID)
	s := "unpacker: " + o.String() + "; "
	switch {
	case !okU || !okG:
		s += "that owner is not mapped into this container, so every file appears owned by nobody (65534)"
	case id.Kind == "single":
		s += fmt.Sprintf("inside (single-id map) every file appears owned by %d:%d, container root", uid, gid)
	default:
		s += fmt.Sprintf("inside (subordinate ids, agent id kept as the host user) every file appears owned by %d:%d", uid, gid)
		if uid == id.User.UID {
			s += ", the agent"
		}
		s += "; container root and the other ids own nothing"
	}
	return s
}

// toContainer maps a host id back through a container's id map.
func toContainer(ms []specs.LinuxIDMapping, host int) (uint32, bool) {
	if host < 0 {
		return 0, false
	}
	for _, m := range ms {
		if uint32(host) >= m.HostID && uint32(host)-m.HostID < m.Size {
			return m.ContainerID + uint32(host) - m.HostID, true
		}
	}
	return 0, false
}
