// SPDX-License-Identifier: MIT
pragma solidity 0.8.30;

import {ERC20} from "@openzeppelin/contracts/token/ERC20/ERC20.sol";
import {ERC20Pausable} from "@openzeppelin/contracts/token/ERC20/extensions/ERC20Pausable.sol";
import {ERC20Permit} from "@openzeppelin/contracts/token/ERC20/extensions/ERC20Permit.sol";
import {Initializable} from "@openzeppelin/contracts/proxy/utils/Initializable.sol";
import {SignedOperations} from "./SignedOperations.sol";

/// @title A tenant's credit (points) token: ERC-20 + EIP-2612 permit, roles, pausable,
/// minted, transferred and burned through signed operations.
/// @dev Deployed once as an implementation and used through EIP-1167 clones, so state that a
/// constructor would set lives in storage written by `initialize`.
contract CreditToken is ERC20Pausable, ERC20Permit, SignedOperations, Initializable {
    /// @dev One token movement. `from == 0` mints (signer holds MINTER_ROLE); otherwise the signer
    /// is the holder `from`, and `to == 0` burns.
    struct Operation {
        address from;
        address to;
        uint256 amount;
        bytes32 ref;
    }

    /// @dev Operations authorised together by one signature.
    struct SignedGroup {
        address signer;
        Operation[] ops;
        uint256 deadline;
        bytes signature;
    }

    bytes32 public constant OPERATION_TYPEHASH =
        keccak256("Operation(address from,address to,uint256 amount,bytes32 ref)");
    bytes32 public constant OPERATIONS_TYPEHASH = keccak256(
        "Operations(Operation[] ops,uint256 deadline)Operation(address from,address to,uint256 amount,bytes32 ref)"
    );

    string private _tokenName;
    string private _tokenSymbol;
    uint8 private _decimals;
    uint248 private _maxSupply; // 0: unlimited

    constructor() ERC20("", "") ERC20Permit("PERS Credit") {}

    function initialize(
        string calldata name_,
        string calldata symbol_,
        uint8 decimals_,
        uint248 maxSupply_,
        address admin,
        address[] calldata minters
    ) external initializer {
        _tokenName = name_;
        _tokenSymbol = symbol_;
        (_decimals, _maxSupply) = (decimals_, maxSupply_);
        if (admin != address(0)) {
            _grantRole(DEFAULT_ADMIN_ROLE, admin);
            _grantRole(PAUSER_ROLE, admin);
        }
        for (uint256 i; i < minters.length; ++i) {
            _grantRole(MINTER_ROLE, minters[i]);
        }
    }

    function name() public view override returns (string memory) {
        return _tokenName;
    }

    function symbol() public view override returns (string memory) {
        return _tokenSymbol;
    }

    function decimals() public view override returns (uint8) {
        return _decimals;
    }

    /// @notice The supply cap; 0 means unlimited.
    function maxSupply() external view returns (uint256) {
        return _maxSupply;
    }

    /// @notice Executes signed groups of operations; an invalid operation is reported by
    /// `OperationFailed` and skipped, the others go through.
    function execute(SignedGroup[] calldata groups) external whenNotPaused {
        for (uint256 g; g < groups.length; ++g) {
            SignedGroup calldata group = groups[g];
            Failure auth = _authorise(group.signer, hashOperations(group.ops, group.deadline), group.deadline, group.signature);
            for (uint256 i; i < group.ops.length; ++i) {
                Operation calldata op = group.ops[i];
                Failure failure = auth == Failure.None ? _execute(group.signer, op) : auth;
                _settle(op.ref, group.signer, failure);
            }
        }
    }

    /// @notice EIP-712 struct hash of `Operations(ops, deadline)`.
    function hashOperations(Operation[] calldata ops, uint256 deadline) public pure returns (bytes32) {
        bytes32[] memory hashes = new bytes32[](ops.length);
        for (uint256 i; i < ops.length; ++i) {
            hashes[i] = keccak256(abi.encode(OPERATION_TYPEHASH, ops[i]));
        }
        return keccak256(abi.encode(OPERATIONS_TYPEHASH, _hashArray(hashes), deadline));
    }

    function _execute(address signer, Operation calldata op) private returns (Failure) {
        (address from, address to, uint256 amount) = (op.from, op.to, op.amount);
        if (from == address(0) ? !hasRole(MINTER_ROLE, signer) : from != signer) return Failure.Unauthorized;
        if (!_consumeRef(signer, op.ref)) return Failure.RefUsed;
        if (amount == 0 || from == to) return Failure.Invalid;
        if (from == address(0)) {
            uint256 cap = _maxSupply == 0 ? type(uint256).max : _maxSupply;
            if (amount > cap - totalSupply()) return Failure.CapExceeded;
        } else if (balanceOf(from) < amount) {
            return Failure.InsufficientBalance;
        }
        _update(from, to, amount);
        return Failure.None;
    }

    function _update(address from, address to, uint256 value) internal override(ERC20, ERC20Pausable) {
        super._update(from, to, value);
    }
}
