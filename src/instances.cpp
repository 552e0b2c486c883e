// The instantiations channel.hpp declares extern: Queue<std::string>, its handles and
// channel<std::string>, compiled once here for every program that links the library.
#include <string>

#include <hopper/hopper.hpp>

namespace hopper {
template class detail::Queue<std::string>;
template class Sender<std::string>;
template class Receiver<std::string>;
template Result<Channel<std::string>> channel<std::string>(const Options&);
}  // namespace hopper
