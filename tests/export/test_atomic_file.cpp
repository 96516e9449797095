#include "llmpress/io/atomic_file.h"

#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <sstream>

#include "llmpress/core/error.h"
#include "test_util.h"

namespace llmpress {
namespace {

using test::slurp;
namespace fs = std::filesystem;

size_t entries(const std::string& dir) {
  return size_t(std::distance(fs::directory_iterator(dir), fs::directory_iterator()));
}

TEST(AtomicFile, CommitReplacesTheFileAndLeavesNoTemporary) {
  test::TempDir dir;
  write_file_atomic(dir.file("a.txt"), "old");
  {
    AtomicFile file(dir.file("a.txt"));
    file.write("new ");
    file.write_zeros(3);
    EXPECT_EQ(file.bytes_written(), 7u);
    EXPECT_EQ(slurp(dir.file("a.txt")), "old");  // nothing visible before commit
    file.commit();
  }
  EXPECT_EQ(slurp(dir.file("a.txt")), std::string("new \0\0\0", 7));
  EXPECT_EQ(entries(dir.path()), 1u);
}

TEST(AtomicFile, WithoutCommitTheOldFileIsUntouched) {
  test::TempDir dir;
  write_file_atomic(dir.file("model.gguf"), "precious");
  try {
    AtomicFile file(dir.file("model.gguf"));
    file.write("half a mod");
    throw Error("simulated failure mid-export");
  } catch (const Error&) {
  }
  EXPECT_EQ(slurp(dir.file("model.gguf")), "precious");
  EXPECT_EQ(entries(dir.path()), 1u);
}

TEST(AtomicFile, MissingFolderIsAClearError) {
  test::TempDir dir;
  try {
    AtomicFile file(dir.file("no/such/out.gguf"));
    FAIL() << "expected an Error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("does not exist"), std::string::npos) << e.what();
  }
}

TEST(AtomicDirectory, BuildsAndReplacesAFolderOnlyOnCommit) {
  test::TempDir dir;
  const std::string out = dir.file("model");
  {
    AtomicDirectory folder(out);
    write_file_atomic(folder.file("config.json"), R"({"llmpress": {"n": 1}})");
    EXPECT_FALSE(fs::exists(out));
    folder.commit();
  }
  EXPECT_EQ(slurp(out + "/config.json"), R"({"llmpress": {"n": 1}})");
  {
    AtomicDirectory folder(out);  // abandoned: the first folder stays
    write_file_atomic(folder.file("config.json"), R"({"llmpress": {"n": 2}})");
  }
  EXPECT_EQ(slurp(out + "/config.json"), R"({"llmpress": {"n": 1}})");
  {
    AtomicDirectory folder(out);
    write_file_atomic(folder.file("weights.bin"), "w");
    folder.commit();
  }
  EXPECT_FALSE(fs::exists(out + "/config.json"));  // replaced as a whole
  EXPECT_EQ(slurp(out + "/weights.bin"), "w");
  EXPECT_EQ(entries(dir.path()), 1u);  // no .tmp or .old leftovers
}

// Nothing the user had is replaced: a folder of other files (or another tool's model) is refused before
// any work; an empty folder or one of our outputs is fine; a file output is never a folder.
TEST(AtomicDirectory, RefusesAFolderThatIsNotAnLlmpressOutput) {
  test::TempDir dir;
  fs::create_directories(dir.file("mine"));
  write_file_atomic(dir.file("mine/notes.txt"), "precious");
  fs::create_directories(dir.file("theirs"));
  write_file_atomic(dir.file("theirs/config.json"), R"({"model_type": "llama"})");
  for (const char* name : {"mine", "theirs"}) {
    try {
      check_output_path(dir.file(name), true);
      FAIL() << name << " must be refused";
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find("refusing to replace"), std::string::npos) << e.what();
    }
    EXPECT_THROW(AtomicDirectory folder(dir.file(name)), Error);
  }
  EXPECT_EQ(slurp(dir.file("mine/notes.txt")), "precious");
  fs::create_directories(dir.file("empty"));
  EXPECT_NO_THROW(check_output_path(dir.file("empty"), true));
  EXPECT_NO_THROW(check_output_path(dir.file("new"), true));
  EXPECT_NO_THROW(check_output_path(dir.file("new.gguf"), false));
  EXPECT_THROW(check_output_path(dir.file("empty"), false), Error);  // a file output onto a folder
  EXPECT_THROW(check_output_path(dir.file("no/such/out.gguf"), false), Error);
}

TEST(AtomicDirectory, RefusesToReplaceAFile) {
  test::TempDir dir;
  write_file_atomic(dir.file("model"), "x");
  EXPECT_THROW(AtomicDirectory folder(dir.file("model")), Error);
  EXPECT_EQ(slurp(dir.file("model")), "x");
}

// A PID that no longer runs: a child that has exited and been reaped.
pid_t finished_pid() {
  const pid_t child = ::fork();
  if (child == 0) ::_exit(0);
  ::waitpid(child, nullptr, 0);
  return child;
}

// What a killed run left (its PID gone) is removed when the next writer of that output starts; a
// live process's temporaries and the user's previous folder are kept.
TEST(AtomicFile, TemporariesOfKilledRunsAreRemovedByTheNextWriter) {
  test::TempDir dir;
  const std::string dead = std::to_string(finished_pid()), alive = std::to_string(::getppid());
  write_file_atomic(dir.file("out.gguf.tmp-" + dead + "-a1b2c3"), "partial");
  write_file_atomic(dir.file("out.gguf.tmp-" + alive + "-d4e5f6"), "someone else's");
  write_file_atomic(dir.file("other.gguf.tmp-" + dead + "-a1b2c3"), "another output's");
  write_file_atomic(dir.file("out.gguf"), "new");
  EXPECT_FALSE(fs::exists(dir.file("out.gguf.tmp-" + dead + "-a1b2c3")));
  EXPECT_TRUE(fs::exists(dir.file("out.gguf.tmp-" + alive + "-d4e5f6")));
  EXPECT_TRUE(fs::exists(dir.file("other.gguf.tmp-" + dead + "-a1b2c3")));
  // Folders: a half-built one goes; a moved-aside previous one goes only once the new one is in place.
  fs::create_directories(dir.file("model.tmp-" + dead + "-x/sub"));
  fs::create_directories(dir.file("model.old-" + dead + "-y"));
  EXPECT_EQ(remove_stale_temporaries(dir.path(), "model.tmp-", dir.file("model")), 1);
  EXPECT_TRUE(fs::exists(dir.file("model.old-" + dead + "-y")));  // no model/ yet: this is the user's
  fs::create_directories(dir.file("model"));
  { AtomicDirectory folder(dir.file("model")); }
  EXPECT_FALSE(fs::exists(dir.file("model.old-" + dead + "-y")));
  fs::create_directories(dir.file(".llmpress-work-" + dead + "-z"));
  EXPECT_EQ(remove_stale_temporaries(dir.path(), ".llmpress-work-"), 1);
}

// Ctrl-C during a write: the process ends by the signal and leaves no temporary file.
TEST(AtomicFile, InterruptRemovesTheTemporaryFile) {
  test::TempDir dir;
  const pid_t child = ::fork();
  if (child == 0) {
    install_interrupt_cleanup();
    AtomicFile file(dir.file("out.gguf"));
    file.write(std::string(1 << 20, 'x'));
    ::raise(SIGINT);
    ::_exit(0);  // not reached
  }
  int status = 0;
  ::waitpid(child, &status, 0);
  ASSERT_TRUE(WIFSIGNALED(status));
  EXPECT_EQ(WTERMSIG(status), SIGINT);
  EXPECT_EQ(entries(dir.path()), 0u);
}

}  // namespace
}  // namespace llmpress
